"""`commune-bus tail --idle`: the quiet seconds count from the first fetch answered, not from the command's start.

A connection slow to its first fetch (TLS and SASL on a loaded broker) took longer than `--idle 2`, and `tail` said
"0 records" of a topic that held some (a review of the tests' timing; `tests/cli/test_tail_since.py` waited on it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.topics import NOTIFY_STATUS, scoped
from services.cli import kafka_io
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.kafkatools import produce

pytestmark = pytest.mark.kafka
IDLE_S = 0.3
FIRST_ANSWER_S = 1.0
"""How late the first fetch's answer comes: over the idle seconds."""


def slow_first_fetch(consumers: list[AIOKafkaConsumer]) -> Any:
    """`clients.consumer`, whose consumer's first `getmany` comes back empty `FIRST_ANSWER_S` late, as on a slow
    connection (the records it would have brought come with the next one)."""
    made = clients.consumer

    def consumer(*args: Any, **kwargs: Any) -> AIOKafkaConsumer:
        real = made(*args, **kwargs)
        getmany, calls = real.getmany, []

        async def first_late(*a: Any, **k: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                await asyncio.sleep(FIRST_ANSWER_S)
                return {}
            return await getmany(*a, **k)

        real.getmany = first_late  # type: ignore[method-assign]
        consumers.append(real)
        return real

    return consumer


@pytest.mark.parametrize("since", [None, 0], ids=["from-beginning", "since"])
def test_records_behind_a_slow_first_fetch_are_shown(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch,
                                                     since: int | None) -> None:
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    spec = scoped(NOTIFY_STATUS, "cli" + naming.unique(8))
    topic = spec.name
    asyncio.run(ensure_topics(conn, [spec]))
    asyncio.run(produce(kafka_bootstrap, topic, [(b"%d" % n, b'{"n": %d}' % n, []) for n in range(5)]))
    consumers: list[AIOKafkaConsumer] = []
    monkeypatch.setattr(clients, "consumer", slow_first_fetch(consumers))
    shown: list[bytes] = []
    seen = asyncio.run(kafka_io.tail(conn, topic, True, None, IDLE_S, lambda r: shown.append(r.value or b""), since))
    assert consumers, "tail made its consumer elsewhere: this test injects nothing"
    assert seen == 5 and sorted(shown) == sorted(b'{"n": %d}' % n for n in range(5))
