"""Fenced writes for one owned partition: a transactional producer per changelog partition (ADR 0016).

Merges are idempotent, but the changelog is compacted: it keeps the *last* write
per key, so a state written by a worker that has lost the partition (frozen past
its session timeout, then woken) would overwrite its successor's newer one, and
a later restore would lose events. The transactional id
`<namespace.>commune-bus.metrics.p<N>` is the same on every worker. The new owner
of N starts its writer before it restores N: `InitProducerId` aborts the earlier
owner's open transaction (or waits for its commit to finish) and fences it, so
every later send or commit of the earlier owner fails with ProducerFenced. The
restore then reads read_committed: every committed write of the earlier owner,
none of its others. Snapshots of N's communes go through the same producer, so a
woken worker's stale snapshot is fenced too.

A write is one transaction whose sends are all checked before the commit
(aiokafka commits a transaction one of whose batches failed); a failed send
aborts it (`WriteFailed`). A write not done within the transaction timeout
(aiokafka can wait for ever on a coordinator that does not answer) raises
`WriteStuck`, and the writer takes no more. Either, and a fenced write, ends the
run: the runtime restarts it from Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from schemas.wire import KafkaRecord
from services.common import closing, transactions

log = structlog.get_logger("metrics")
Sent = list[asyncio.Future[RecordMetadata]]


class StateRecord(NamedTuple):
    """A changed entity state and its commune's last-received time as it changed (epoch ms: the newest canonical
    record timestamp of a change of the commune, this one's or an earlier one's; `PartitionState.received_ms`),
    written as the changelog record's own timestamp (Kafka Streams writes its input record's: that could go back, and
    compaction then lost the newest): a restore gives the commune's last-received time back
    (`commune_last_received_timestamp_seconds`), from a compacted changelog too."""

    value: bytes
    timestamp_ms: int


class WriteFailed(KafkaError):
    """A send of a changelog transaction failed, so the transaction was aborted (error types only, no values)."""


class WriteStuck(KafkaError):
    """A changelog transaction did not finish within the transaction timeout; the writer is unusable."""


def is_fenced(exc: BaseException) -> bool:
    """`exc` says that the partition's next owner started its writer (or the broker timed the transaction out)."""
    return transactions.is_fenced(exc)


class PartitionWriter:
    """Writes of one owned partition, each a transaction of its own, one at a time."""

    def __init__(self, producer: AIOKafkaProducer, partition: int, changelog: str, snapshots: str,
                 timeout_s: float) -> None:
        self.producer, self.partition = producer, partition
        self.changelog, self.snapshots, self.timeout_s = changelog, snapshots, timeout_s
        self._turn = asyncio.Lock()
        self._inflight: asyncio.Task[None] | None = None
        self._stuck = False

    async def start(self) -> None:
        """Start the producer: this fences the partition's earlier owner (its open transaction is aborted). Bounded
        (`closing.start_within`): a coordinator that never gives it a producer id held the restore, and `/readyz`,
        silent for ever, `/healthz` 200; it is now a Kafka error, and the run restarts."""
        await closing.start_within("metrics", f"writer p{self.partition}", self.producer)

    async def write_states(self, states: Mapping[bytes, StateRecord]) -> None:
        """Changed entity states to changelog partition N, in one transaction."""
        async def send() -> Sent:
            sent: Sent = []
            batch = self.producer.create_batch()
            for key, (value, stamp) in states.items():
                at = stamp if stamp > 0 else None  # None: the producer's clock
                if batch.append(key=key, value=value, timestamp=at) is None:  # full: send it, start the next
                    sent.append(await self.producer.send_batch(batch, self.changelog, partition=self.partition))
                    batch = self.producer.create_batch()
                    batch.append(key=key, value=value, timestamp=at)
            if batch.record_count():
                sent.append(await self.producer.send_batch(batch, self.changelog, partition=self.partition))
            return sent
        await self._write(send)

    async def write_snapshots(self, records: Sequence[KafkaRecord]) -> None:
        """Snapshot events of N's communes (partitioned by their key), in one transaction."""
        async def send() -> Sent:
            return [await self.producer.send(self.snapshots, r.value, key=r.key, headers=r.headers) for r in records]
        await self._write(send)

    async def close(self) -> None:
        """Stop the producer within `closing.CLOSE_TIMEOUT_S` (its unsent batches wait for ever while the broker is
        gone); an unfinished transaction is left to the broker (aborted, or fenced by the next owner). A failed stop
        (a fenced producer, the broker being why we stop) is logged only."""
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
        await closing.close_within("metrics", f"writer p{self.partition}", self.producer.stop)
        if self._inflight is not None:  # its abort waits for an answer the stopped producer never asks for: for ever,
            self._inflight.cancel()  # unless cancelled again (as `closing.stop_writer`; audit)

    async def _write(self, send: Callable[[], Awaitable[Sent]]) -> None:
        async with self._turn:
            if self._stuck:
                raise WriteStuck(f"partition {self.partition}: an earlier transaction never finished")
            # a task of its own: cancelling aiokafka's commit or abort half-way could leave this caller waiting too
            self._inflight = asyncio.create_task(self._transaction(send), name=f"metrics:write:p{self.partition}")
            try:
                done, _ = await asyncio.wait({self._inflight}, timeout=self.timeout_s)
            except asyncio.CancelledError:  # the run ends (its task group cancels us): the write goes on unawaited
                self._inflight.add_done_callback(self._abandoned)
                raise
            if not done:
                self._stuck = True
                # left to finish (or to `close`): whatever it ends with is the broker's, and WriteStuck says enough
                self._inflight.add_done_callback(closing.retrieved)
                raise WriteStuck(f"partition {self.partition}: not committed within {self.timeout_s:g} s")
            self._inflight.result()

    def _abandoned(self, write: asyncio.Task[None]) -> None:
        """The outcome of a write whose caller was cancelled, read once it ends: a woken worker's commit or abort
        fails fenced after its run has ended (chaos `metrics-sigstop`: asyncio logged "Task exception was never
        retrieved" at ERROR for `metrics:write:pN`). Its error is the broker's, the run ends anyway: logged by type."""
        if not write.cancelled() and (exc := write.exception()) is not None:
            log.info("metrics.write_abandoned", partition=self.partition, error=type(exc).__name__)

    async def _transaction(self, send: Callable[[], Awaitable[Sent]]) -> None:
        async with transactions.transaction(self.producer):  # an exception inside aborts (a fenced producer: dead)
            await transactions.all_sent(await send(), WriteFailed)
