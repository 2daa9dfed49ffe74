"""Reading the ledger topic: only the partitions this worker's input partitions need, restored then tailed.

`hold` is called when a consumer is assigned input partitions: the ledger partitions
with those numbers are taken on (an empty store, read from the topic's beginning) and
every ledger partition no consumer of this worker needs any more is let go (its store
deleted). Let go at the next assignment rather than on revocation: an eager rebalance
revokes everything and mostly gives it back, and the tail keeps a held partition current
meanwhile. `hold` returns once every entry that existed when it was called in the
assigned partitions has been applied: the worker sees what the previous owner sent
before redoing its records (ADR 0007, 0012). A catch-up that fails or does not finish
in time raises, ending the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.common import clients
from services.common.probe import broker_answers
from services.common.settings import KafkaConnection
from services.notify.ledger import Ledger

T = TypeVar("T")
CLIENT_ID = "commune-bus-notify-ledger"
FETCH_BYTES = 8 * 1024 * 1024


class LedgerBehind(KafkaError):
    """The ledger tail did not reach the end offsets in time: the worker cannot tell what was already sent. A Kafka
    error: the run restarts, and while no broker answers it is an outage, not a crash (`services.common.streak`);
    it ended the process before (exit 1, every pod restarted and restoring its ledger from the start)."""


class LedgerFeed:
    def __init__(self, conn: KafkaConnection, ledger: Ledger, *, catch_up_s: float = 60.0) -> None:
        self.conn, self.ledger, self.catch_up_s = conn, ledger, catch_up_s
        self._needed: dict[str, set[int]] = {}
        """Per consumer of this worker, the input partition numbers it was last assigned."""
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Event()
        """Set after each fetch of the tail, so a catch-up re-checks positions without polling."""
        self._moving = asyncio.Lock()
        """Held by the tail around each fetch and by `hold` while it changes the tail's partitions."""
        self._holding = asyncio.Event()
        """Set while the tail has partitions: aiokafka's fetch waits for an assignment, ignoring its timeout."""

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.ledger.topic, partition)

    async def open(self) -> None:
        """The tail's consumer, with no partition yet (assignments bring them)."""
        consumer = clients.consumer(self.conn, client_id=CLIENT_ID, max_partition_fetch_bytes=FETCH_BYTES)
        await consumer.start()
        self._consumer = consumer

    async def follow(self) -> None:
        """Apply entries as they arrive; runs as a supervised task until cancelled."""
        consumer = self._opened()
        while True:
            await self._holding.wait()
            async with self._moving:
                if not consumer.assignment():
                    continue
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for tp, records in batch.items():
                    self.ledger.apply_records(tp.partition, ((r.key, r.value, r.timestamp) for r in records))
            self._progress.set()

    async def hold(self, consumer: str, partitions: Iterable[int]) -> None:
        """`consumer` now owns input `partitions`: hold their ledger partitions and catch up with them."""
        assigned = set(partitions)
        self._needed[consumer] = assigned
        wanted = set().union(*self._needed.values())
        tail = self._opened()
        async with self._moving:
            kept = self.ledger.held & wanted
            positions = {p: await self._bounded(tail.position(self._tp(p))) for p in kept}
            for p in self.ledger.held - wanted:
                self.ledger.drop(p)
            new = wanted - kept
            for p in new:
                self.ledger.hold(p)
            tail.assign([self._tp(p) for p in sorted(wanted)])
            if wanted:
                self._holding.set()
            else:
                self._holding.clear()
            for p, offset in positions.items():
                tail.seek(self._tp(p), offset)
            if new:
                await tail.seek_to_beginning(*[self._tp(p) for p in new])
        await self.catch_up(assigned)

    async def catch_up(self, partitions: Iterable[int]) -> None:
        """Return once every entry that existed when called in `partitions` has been applied by `follow`.

        A restore of a long partition may take a while: the catch-up fails only when the tail has made no
        progress on them for `catch_up_s`.
        """
        tail = self._opened()
        tps = [self._tp(p) for p in sorted(set(partitions))]
        if not tps:
            return
        ends = await self._bounded(tail.end_offsets(tps))
        progress = -1
        while behind := [tp for tp, end in ends.items() if await self._bounded(tail.position(tp)) < end]:
            now = sum([await self._bounded(tail.position(tp)) for tp in behind])
            if now == progress:
                raise LedgerBehind(f"ledger tail made no progress for {self.catch_up_s:.0f} s")
            progress = now
            try:
                async with asyncio.timeout(self.catch_up_s):
                    while sum([await self._bounded(tail.position(tp)) for tp in behind]) == progress:
                        self._progress.clear()
                        await self._progress.wait()
            except TimeoutError:
                pass

    async def _bounded(self, answer: Awaitable[T]) -> T:
        """An answer of the tail's within `catch_up_s`, else `LedgerBehind`: aiokafka's `position` waits for ever
        while a partition has no valid position (its leader gone after `seek_to_beginning`), and the catch-up with
        it (no provider call, no restart; `/healthz` 200)."""
        try:
            async with asyncio.timeout(self.catch_up_s):
                return await answer
        except TimeoutError:
            raise LedgerBehind(f"the ledger tail gave no position within {self.catch_up_s:.0f} s") from None

    async def reachable(self) -> bool:
        """Whether the broker answers a request for the ledger's end offsets (`services.common.probe`)."""
        return await broker_answers(self._opened(), [self._tp(0)])

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _opened(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("LedgerFeed.open() first")
        return self._consumer
