"""A revocation in the middle of a batch (audit): aiokafka runs the rebalance listener in its coordinator task, beside
the consumer's loop, which went on with the batch once the revocation had committed what was done and forgotten the
partition. The rest of the batch started the partition's slots afresh, their records done at once, and the commit
loop (the old assignment still listed until the new one arrives) committed past a record whose notification was
only queued; its job was then dropped as its partition's, and never sent. Real `Records.consume`, tracker,
`Listener` and `NotifyApp._commit`; a consumer serving one batch, and a dispatcher that holds record 900's
notification in its lane and acknowledges record 1000's deferral once the group has begun to rebalance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from aiokafka import TopicPartition

from schemas import wire
from services.common.health import Health
from services.common.stall import StallWatch
from services.notify.app import NotifyApp
from services.notify.pauses import Pauses
from services.notify.rebalance import Fence, Listener, Readiness
from services.notify.records import Lane, Records
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.notify.events import directory, dossier, storm
from tests.notify.fakes import OnePartition

pytestmark = pytest.mark.unit
FIRST, HELD, MID, END = 898, 900, 1000, 1200
"""The batch's offsets (FIRST to END - 1); record HELD's notification stays queued; the group begins to rebalance
while record MID's deferral waits for its ledger write."""
LANES = {"routine": Names("").dossier, "urgent": Names("").announcement}


class Record:
    def __init__(self, lane: Lane, offset: int) -> None:
        event = dossier(f"evt-{offset}") if lane == "routine" else storm(f"ann-{offset}", category="general")
        encoded = wire.encode(event)
        self.offset, self.key, self.value, self.headers, self.timestamp = (offset, encoded.key, encoded.value,
                                                                           encoded.headers, 0)


class Consumer(OnePartition):
    """What aiokafka shows notify of one partition: `assignment` lists it throughout (the old assignment until the new
    one arrives, then the new one), and a commit is taken (the broker takes one of the current generation while the
    group prepares a rebalance). `idle` is set once it has nothing left to serve: the loop is done with the rest."""

    def __init__(self, tp: TopicPartition, batch: list[Record]) -> None:
        super().__init__(tp)
        self.fetches, self.commits = [batch], list[dict[TopicPartition, int]]()
        self.idle = asyncio.Event()

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0)
        if self.fetches and self.tp not in self._paused:
            return {self.tp: self.fetches.pop(0)}
        if not self.fetches:
            self.idle.set()
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class Dispatcher:
    """Record HELD's notification waits in its lane (its provider backing off); every other one is deferred, done
    once its ledger write is acknowledged: record MID's when the test says so."""

    routine_backlog = emergency_backlog = 0

    def __init__(self) -> None:
        self.handed: list[int] = []
        """The offsets of the records whose requests were handed over, in order."""
        self.queued: list[Callable[[], None]] = []
        self.writing, self.acknowledged = asyncio.Event(), asyncio.Event()

    async def submit(self, request: Any, done: Callable[[], None], source: object = None) -> None:
        offset = int(request.event_id.rsplit("-", 1)[1])
        self.handed.append(offset)
        if offset == HELD:
            self.queued.append(done)
            return
        if offset == MID:
            self.writing.set()
            await self.acknowledged.wait()
        await asyncio.sleep(0)
        done()


class Worker:
    """One notify consumer of `lane` with its real loop, tracker, listener and commit."""

    def __init__(self, lane: Lane) -> None:
        self.tp = TopicPartition(LANES[lane], 2)
        self.failures: list[BaseException] = []
        health = SimpleNamespace(committed=lambda: None, set_ready=lambda *_: None)
        self.app = NotifyApp(NotifySettings(deadlines=False), SimpleNamespace(health=health))  # type: ignore[arg-type]
        self.consumer = Consumer(self.tp, [Record(lane, offset) for offset in range(FIRST, END)])
        self.dispatcher = Dispatcher()
        self.records = Records(self.app.s, Names(""), directory(), Registry(), None,  # type: ignore[arg-type]
                               self.dispatcher, self.app.tracker, None)  # type: ignore[arg-type]
        readiness = Readiness(Health("notify"), (lane,))
        readiness.assigned(lane)
        pauses = Pauses(self.consumer)
        self.tasks: list[asyncio.Task[None]] = []
        commit = partial(self.app._commit, self.consumer)  # type: ignore[arg-type]
        self.listener = Listener(self.failures.append, lane, readiness, Fence(readiness, StallWatch(60)),
                                 commit=commit, forget=self.app.tracker.forget, hold=self._caught_up,
                                 pause=pauses.hold, resume=pauses.release, spawn=self._spawn, drain_s=1.0)
        self.tasks.append(asyncio.create_task(self.records.consume(self.consumer, pauses, lane)))  # type: ignore[arg-type]

    async def _caught_up(self, partitions: set[int]) -> None:
        return None

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        self.tasks.append(asyncio.create_task(coro))
        return self.tasks[-1]

    async def revoked_mid_batch(self) -> None:
        """The group begins to rebalance while record MID waits for its write: the coordinator's revocation."""
        await asyncio.wait_for(self.dispatcher.writing.wait(), 5)
        await self.listener.on_partitions_revoked({self.tp})
        assert self.consumer.commits == [{self.tp: HELD}], "the revocation commits what is done"

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        assert self.failures == []


@pytest.mark.parametrize("lane", ["routine", "urgent"])
async def test_the_rest_of_a_batch_whose_partition_was_revoked_is_not_handled_nor_committed(lane: Lane) -> None:
    """The records after the revocation are left to the partition's next owner: the commit loop, 0.5 s later and the
    old assignment still listed, commits nothing past record 900, whose notification is only queued (it committed
    1200)."""
    w = Worker(lane)
    try:
        with structlog.testing.capture_logs() as logs:
            await w.revoked_mid_batch()
            w.dispatcher.acknowledged.set()
            await asyncio.wait_for(w.consumer.idle.wait(), 5)
        await w.app._commit(w.consumer, "loop")  # type: ignore[arg-type]
        assert w.consumer.commits == [{w.tp: HELD}]
        assert w.dispatcher.handed == list(range(FIRST, MID + 1))
        assert [(e["offset"], e["left"]) for e in logs if e["event"] == "notify.revoked_mid_batch"] == [(MID + 1, 199)]
    finally:
        await w.close()


@pytest.mark.parametrize("lane", ["routine", "urgent"])
async def test_a_partition_assigned_back_is_handled_from_its_fresh_fetch_only(lane: Lane) -> None:
    """The same partition assigned back to this worker during the batch: the stale rest of the batch is not handled,
    the fresh fetch (from the revocation's commit) is, whole, and the commit point waits for record 900's notification
    before it passes it (the stale rest, done at once, moved it to 1200 ahead of the fresh records)."""
    w = Worker(lane)
    try:
        await w.revoked_mid_batch()
        await w.listener.on_partitions_assigned({w.tp})
        w.consumer.fetches.append([Record(lane, offset) for offset in range(HELD, END)])
        w.dispatcher.acknowledged.set()
        await asyncio.wait_for(w.consumer.idle.wait(), 5)
        await w.app._commit(w.consumer, "loop")  # type: ignore[arg-type]
        assert w.consumer.commits == [{w.tp: HELD}]
        assert w.dispatcher.handed == [*range(FIRST, MID + 1), *range(HELD, END)]
        for done in w.dispatcher.queued:  # record 900's notification sent at last
            done()
        await w.app._commit(w.consumer, "loop")  # type: ignore[arg-type]
        assert w.consumer.commits == [{w.tp: HELD}, {w.tp: END}]
    finally:
        await w.close()
