"""Does the broker answer? The probe that keeps `/readyz` truthful while a worker waits out an outage.

A worker whose producer rides out an outage (sends pending, never failed) and whose consumer just fetches
nothing looks healthy to itself: nothing raises. Asking the broker for end offsets every second, with a
short time limit, tells the outage apart from a quiet topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 3.0


async def broker_answers(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition],
                         timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the broker answers a request for `partitions`' end offsets within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.end_offsets(list(partitions))
    except (TimeoutError, KafkaError):
        return False
    return True


async def probe_loop(answers: Callable[[], Awaitable[bool]], report: Callable[[bool], None],
                     every_s: float = PROBE_EVERY_S) -> None:
    """Report whether the broker answers, every `every_s` seconds, until cancelled (a supervised task)."""
    while True:
        report(await answers())
        await asyncio.sleep(every_s)
