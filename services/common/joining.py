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
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import ConnectionGroup
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from services.common import closing, stopping

UNJOINED_CLOSE_S = 1.0
"""How long the close of a consumer stopped mid-join may hold the stop: it holds no partition and no offset to commit,
and its coordinator waits on the join's answer, which may never come."""


async def start_unless_stopped(service: str, consumer: AIOKafkaConsumer, stop: asyncio.Event,
                               client: str = "consumer") -> bool:
    """Start `consumer` (its join included); False if `stop` was set first, the consumer then closed."""
    if await stopping.unless_stopped(consumer.start(), stop) is not stopping.STOPPED:  # (its error, if it failed)
        return True
    await closing.close_within(service, client, consumer.stop, UNJOINED_CLOSE_S)  # the join not waited for
    return False


async def stop_member(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`; when the consumer waits in a group join, its partitions revoked already (the listener has
    given them up: drained, committed), the group is also told at once that it leaves.

    aiokafka's stop waits for its coordinator's JoinGroup, which the broker answers only once every member has
    rejoined or the rebalance timeout passed: notify, stopped while its group was mid-join behind a stalled member,
    took the whole 10 s `closing.CLOSE_TIMEOUT_S` (both consumers' stops given up, `client.stop_failed`). A LeaveGroup
    on the coordinator's connection waits behind that JoinGroup (the broker answers a connection's requests in order:
    38 s measured); sent on a connection of its own, it is answered at once, the JoinGroup with it, and the stop ends
    (0.25-0.6 s measured; the group goes on waiting for the stalled member, without this one)."""
    coordinator: Any = getattr(consumer, "_coordinator", None)  # private in aiokafka 0.14 (pinned: aiokafka_compat)
    stopping = asyncio.ensure_future(consumer.stop())
    try:
        if _revoked_and_joining(coordinator):
            await asyncio.sleep(0)  # the stop marks the coordinator closing first: the refused join is not sent again
            client: Any = getattr(consumer, "_client")  # noqa: B009
            with suppress(KafkaError, OSError):
                await client.send(coordinator.coordinator_id, LeaveGroupRequest(coordinator.group_id,
                                                                                coordinator.member_id),
                                  group=ConnectionGroup.DEFAULT)
    finally:
        await stopping


def _revoked_and_joining(coordinator: Any) -> bool:
    """The coordinator has run its join's preparation (the listener's revocation returned) and holds a member of a
    generation: its JoinGroup is at the broker, or about to be."""
    return (coordinator is not None and bool(getattr(coordinator, "_performed_join_prepare", False))
            and coordinator.generation > 0 and bool(coordinator.member_id) and coordinator.coordinator_id is not None)
