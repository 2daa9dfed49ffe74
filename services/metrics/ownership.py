"""The canonical partitions a metrics worker owns, each with its state rebuilt from the changelog on assignment.

The range assignor gives a worker the same partition numbers of all three
canonical topics (they share the commune key and partition count), so partition
N is one unit of state: a RocksDB store, its communes' totals and its writer (a
transactional producer of its own, `writers`), rebuilt from changelog partition N
when N arrives: the writer is started first, which fences N's earlier owner, and
only then is the changelog read (ADR 0016). A revocation stops exporting
everything at once; the states are kept until the next assignment says which
stay ours (those need no restore) and which go (dropped with their store and
writer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog
from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError
from rocksdict import Rdict

from schemas import wire
from schemas.deadletter import Reason, Rejection
from services.common import closing, store_faults
from services.common.changelog import read_to_end
from services.common.lag import LagGauge
from services.common.settings import KafkaConnection
from services.metrics import decoding, store, telemetry
from services.metrics.handlers import Decoded
from services.metrics.partition import PartitionState
from services.metrics.state import believed_until, received_at
from services.metrics.topics import Names
from services.metrics.writers import PartitionWriter, StateRecord, is_fenced

log = structlog.get_logger("metrics")
Batch = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
NewWriter = Callable[[int], PartitionWriter]
"""The writer of partition N, not started (starting it is the fence)."""
Changes = dict[int, dict[bytes, StateRecord]]
"""A batch's changed states by partition: what its changelog transactions write."""


class Ownership:
    """Partition states of one worker; only the owned ones are exported."""

    def __init__(self, conn: KafkaConnection, names: Names, state_root: Path, client_id: str,
                 new_writer: NewWriter, decode: decoding.Decode = decoding.fast) -> None:
        self.conn, self.names, self.state_root, self.client_id = conn, names, state_root, client_id
        self.new_writer, self.decode = new_writer, decode
        self.partitions: dict[int, PartitionState] = {}
        self.writers: dict[int, PartitionWriter] = {}
        self.owned: set[int] = set()
        self.lag = LagGauge("metrics", owns=lambda tp: tp in self.assigned)
        """The consumer lag series of the worker's partitions (`services.common.lag`), gone with them on a revoke."""
        self.assigned: set[TopicPartition] = set()
        self._dbs: dict[int, Rdict] = {}

    def exported(self) -> list[PartitionState]:
        """The partitions to export right now: owned ones only."""
        return [self.partitions[p] for p in sorted(self.owned) if p in self.partitions]

    def revoke(self) -> None:
        """Stop exporting everything; states are kept until the next assignment says what stays ours."""
        self.owned.clear()
        self.assigned.clear()
        telemetry.OWNED.set(0)
        self.lag.forget()

    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Own `assigned`: drop the states of partitions that left, fence and restore those that arrived."""
        numbers = {tp.partition for tp in assigned}
        for p in (set(self.partitions) | set(self.writers)) - numbers:
            await self._drop(p)
        await self._restore(sorted(numbers - set(self.partitions)))
        self.assigned = set(assigned)
        self.owned = numbers
        telemetry.OWNED.set(len(numbers))
        log.info("metrics.assigned", partitions=sorted(numbers))

    def apply(self, batch: Batch, now_s: float) -> tuple[Changes, dict[TopicPartition, int]]:
        """Merge each decodable event into its partition's state; returns changed states and offsets to commit.

        An event time is believed against its record's timestamp, when intake published it (`state.believed_until`),
        not against this worker's clock: how long the record waited in the topic (lag, a replay, a restore) must
        not change what it means. The same timestamp is when the backbone received the event (the commune's
        last-received time, which the changelog record carries: `PartitionState.received_ms`). `now_s`, the worker's
        clock, stands in for a record without a timestamp."""
        clock_believes = believed_until(now_s)
        clock_ms = int(now_s * 1000)
        changes: Changes = {}
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            if tp.partition not in self.owned:  # fetched before a rebalance: not ours (or not restored) now, never
                continue  # committed here; whoever owns it reads it again from the committed offset
            family = self.names.family_of[tp.topic].value
            part = self.partitions[tp.partition]
            changed = changes.setdefault(tp.partition, {})
            applied = unchanged = invalid = failed = skipped = 0
            for rec in records:
                event = _decode(self.decode, tp, rec)
                if event is None:
                    invalid += 1
                    continue
                stamp = rec.timestamp
                received = received_at(stamp, clock_ms) if stamp > 0 else clock_ms
                out = part.apply_safely(event, believed_until(stamp / 1000) if stamp > 0 else clock_believes, received)
                if out is None:
                    unchanged += 1
                elif isinstance(out, Rejection):  # counted and skipped: the partition goes on
                    if out.reason is Reason.INTERNAL_ERROR:  # a bug met by this event
                        failed += 1
                        log.error("event.failed", topic=tp.topic, partition=tp.partition, offset=rec.offset,
                                  reason=out.reason.value, detail=out.message)
                    else:  # refused by a state's bound (`partition.TOO_MANY_CLUSTERS`)
                        skipped += 1
                        log.warning("event.skipped", topic=tp.topic, partition=tp.partition, offset=rec.offset,
                                    reason=out.reason.value, detail=out.message)
                else:
                    changed[out[0]] = StateRecord(out[1], part.received_ms(event.commune))  # twice: the later
                    applied += 1
            offsets[tp] = records[-1].offset + 1
            for outcome, n in (("applied", applied), ("unchanged", unchanged), ("invalid", invalid),
                               ("failed", failed), ("skipped", skipped)):
                if n:
                    telemetry.EVENTS.labels(family, outcome).inc(n)
        return changes, offsets

    async def write(self, changes: Changes) -> None:
        """Each partition's changed states in a transaction of its writer, all partitions at once; raises a failure
        (a fenced writer first: this worker has lost that partition)."""
        parts = [p for p, states in changes.items() if states]
        results = await asyncio.gather(*(self.writers[p].write_states(changes[p]) for p in parts),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise next((f for f in failures if is_fenced(f)), failures[0])

    async def close_all(self) -> None:
        """Forget every state, remove its store, stop its writer (the worker stops; a new run restores). The writers
        stop together: each within its deadline, not one after the other."""
        self.revoke()
        dropped = set(self.partitions) | set(self._dbs) | set(self.writers)  # incl. a restore that failed half-way
        await asyncio.gather(*(self._drop(p) for p in dropped))

    async def _restore(self, partitions: list[int]) -> None:
        """Fence each partition's earlier owner, then rebuild its store and totals from its changelog partition
        (read_committed, to the end offset it has once fenced)."""
        if not partitions:
            return
        for p in partitions:  # what a restore cancelled half-way made of it (a revocation came first)
            if p in self._dbs or p in self.writers:
                await self._drop(p)
        parts: dict[int, PartitionState] = {}
        for p in partitions:
            self._dbs[p] = store.open_fresh(self.state_root / f"p{p}")
            parts[p] = PartitionState(p, store.as_mapping(self._dbs[p]))
            self.writers[p] = self.new_writer(p)
        # the fence: the earlier owner's open transaction is aborted (or its commit completed) before we read; one
        # start failing cancels the others (each closes its producer): left running, one could end after the run's
        # stop and keep a sender asking for a producer id for ever, fencing the next run's writer (review)
        starts = [asyncio.ensure_future(self.writers[p].start()) for p in partitions]
        try:
            await asyncio.gather(*starts)
        except BaseException:
            for start in starts:
                start.cancel()
                start.add_done_callback(closing.retrieved)
            await asyncio.wait(starts)  # each closes its producer, bounded (`closing.start_within`)
            raise
        clock_ms = int(time.time() * 1000)

        def apply(partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
            if record.key is None:
                return
            try:
                parts[partition].restore(record.key, record.value, received_at(record.timestamp, clock_ms))
            except Exception as exc:  # one unreadable state must not make every restore (and so the worker) fail
                store_faults.raise_if_fault(exc)  # (the store's disk failing is no state's: each after was skipped)
                telemetry.RESTORE_SKIPPED.inc()
                log.error("metrics.restore_skipped", partition=partition, offset=record.offset,
                          error=type(exc).__name__)

        # stall-limited (`changelog.RESTORE_STALL_S`): not waiting for ever while `/healthz` says 200 (audit 1b)
        restored = await read_to_end(self.conn, self.names.changelog, partitions, apply, client_id=self.client_id)
        self.partitions.update(parts)
        telemetry.RESTORED.inc(restored)
        log.info("metrics.restored", partitions=partitions, records=restored,
                 communes=sum(len(p.communes) for p in parts.values()))

    async def _drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        db = self._dbs.pop(partition, None)
        if db is not None:
            store.discard(db, self.state_root / f"p{partition}")
        writer = self.writers.pop(partition, None)
        if writer is not None:
            await writer.close()


def _decode(decode: decoding.Decode, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes]) -> Decoded | None:
    """The record's event, or None (logged with the reason) when it is not a valid canonical event."""
    try:
        return decode(rec.headers, rec.value)
    except wire.InvalidRecord as exc:
        log.warning("event.invalid", topic=tp.topic, partition=tp.partition, offset=rec.offset,
                    reason=exc.reason.value, field=exc.field)
        return None
    except (ValidationError, ValueError) as exc:
        log.warning("event.invalid", topic=tp.topic, partition=tp.partition, offset=rec.offset,
                    error=type(exc).__name__)
        return None
