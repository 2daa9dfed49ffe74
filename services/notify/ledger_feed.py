"""Reading the ledger topic: restored whole at start (the shared changelog reader), then tailed while running.

The tail picks up entries other workers write (a deferral another worker recorded,
a notification it sent before a rebalance). `catch_up` is called when partitions
are assigned: the worker sees what the previous owner sent before redoing its
records. A catch-up that fails or does not finish in time raises, ending the run.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.common import clients
from services.common.changelog import read_to_end
from services.common.settings import KafkaConnection
from services.notify.ledger import Ledger

CLIENT_ID = "commune-bus-notify-ledger"


class LedgerBehind(Exception):
    """The ledger tail did not reach the end offsets in time: the worker cannot tell what was already sent."""


class LedgerFeed:
    def __init__(self, conn: KafkaConnection, ledger: Ledger, partitions: int, *, catch_up_s: float = 60.0) -> None:
        self.conn, self.ledger, self.catch_up_s = conn, ledger, catch_up_s
        self._tps = [TopicPartition(ledger.topic, p) for p in range(partitions)]
        self._next: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Event()
        """Set after each fetch of the tail, so `catch_up` re-checks positions without polling."""

    async def restore(self) -> int:
        """Apply every committed entry up to the current end; returns how many were read."""

        def apply(partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
            self.ledger.apply_record(record.key, record.value)
            self._next[TopicPartition(self.ledger.topic, partition)] = record.offset + 1

        return await read_to_end(self.conn, self.ledger.topic, [tp.partition for tp in self._tps], apply,
                                 client_id=CLIENT_ID)

    async def open(self) -> None:
        """The tail's consumer, positioned where the restore stopped (no entry is skipped in between)."""
        consumer = clients.consumer(self.conn, client_id=CLIENT_ID)
        await consumer.start()
        self._consumer = consumer
        consumer.assign(self._tps)
        for tp in self._tps:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            else:
                await consumer.seek_to_beginning(tp)

    async def follow(self) -> None:
        """Apply entries as they arrive; runs as a supervised task until cancelled."""
        consumer = self._opened()
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self.ledger.apply_record(record.key, record.value)
            self._progress.set()

    async def catch_up(self) -> None:
        """Return once every entry that existed when called has been applied by `follow`."""
        consumer = self._opened()
        ends = await consumer.end_offsets(self._tps)
        try:
            async with asyncio.timeout(self.catch_up_s):
                while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            raise LedgerBehind(f"ledger tail not at its end after {self.catch_up_s:.0f} s") from None

    async def reachable(self, timeout_s: float) -> bool:
        """Whether the broker answers a request for the ledger's end offsets within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._opened().end_offsets(self._tps)
        except (TimeoutError, KafkaError):
            return False
        return True

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _opened(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("LedgerFeed.open() first")
        return self._consumer
