"""Starting a group consumer unless the service stops first.

aiokafka 0.14's `start()` of a subscribed consumer waits for its whole group join, and a join waits for every member
of the group: a member that stalls (a paused process, a long pause) holds it up to its session timeout, and with the
broker gone it never ends. A stop asked for meanwhile was seen only once the join ended (intake 7.5 s with a stalled
member; 25 s and a forced stop with the broker stopped mid-join or a 45 s session, term audit), and the consumer's
stop then waited on the join again. Here the stop wins: the start is cancelled and the consumer, never assigned
anything, is closed within `UNJOINED_CLOSE_S`; its close runs on in the background (`closing.close_within`).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from services.common import closing

UNJOINED_CLOSE_S = 1.0
"""How long the close of a consumer stopped mid-join may hold the stop: it holds no partition and no offset to commit,
and its coordinator waits on the join's answer, which may never come."""


async def start_unless_stopped(service: str, consumer: AIOKafkaConsumer, stop: asyncio.Event,
                               client: str = "consumer") -> bool:
    """Start `consumer` (its join included); False if `stop` was set first, the consumer then closed."""
    starting = asyncio.ensure_future(consumer.start())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not starting.done():  # the stop came first, or the caller was cancelled: the join is not waited for
            starting.cancel()
            starting.add_done_callback(closing.retrieved)
    if starting.done() and not starting.cancelled():
        starting.result()  # its error, if it failed
        return True
    await closing.close_within(service, client, consumer.stop, UNJOINED_CLOSE_S)
    return False
