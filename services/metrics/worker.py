"""The metrics shell: consume canonical events, merge them into partition state, flush the changelog, commit.

Delivery: at-least-once from the canonical topics, made exact by the state
merge being idempotent (a redelivered event changes nothing). Per batch: apply
every event, publish the changed states to the changelog (partition = source
partition), then - while the next batch is already being applied - wait for
the broker's acks and commit the consumed offsets. Commits stay in batch
order, and a revocation or stop waits for the last one.

Partitions: the range assignor gives a worker the same partition numbers of all
three canonical topics (they share the commune key and partition count), so
partition N is one unit of state. On assignment the worker rebuilds partition
N's store and totals from changelog partition N; on revocation it stops
exporting it at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas import wire
from services.common.admin import ensure_topics
from services.metrics import store, telemetry
from services.metrics.partition import PartitionState
from services.metrics.settings import MetricsSettings
from services.metrics.snapshots import snapshot
from services.metrics.topics import Names

log = structlog.get_logger("metrics")
Clock = Callable[[], float]
"""Epoch seconds; the overdue gauge and snapshots read it."""


class MetricsWorker:
    def __init__(self, settings: MetricsSettings, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.names = Names(settings.namespace)
        self.partitions: dict[int, PartitionState] = {}
        self.owned: set[int] = set()
        self.assigned: set[TopicPartition] = set()
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._dbs: dict[int, Any] = {}
        self._settling: asyncio.Future[None] | None = None

    @property
    def state_root(self) -> Path:
        return self.settings.state_dir / self.settings.group_id / self.settings.worker_id

    def exported(self) -> list[PartitionState]:
        """The partitions to export right now: owned ones only."""
        return [self.partitions[p] for p in sorted(self.owned) if p in self.partitions]

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        await ensure_topics(s.bootstrap, self.names.specs)
        self.producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, enable_idempotence=True, linger_ms=5,
                                         client_id=f"metrics-{s.worker_id}")
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=s.group_id, client_id=f"metrics-{s.worker_id}",
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,), fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.consumer.subscribe(list(self.names.family_of), listener=_Rebalance(self))
        await self.consumer.start()
        log.info("metrics.started", group=s.group_id, worker=s.worker_id)

    async def stop(self) -> None:
        try:
            await self.settle()
        except KafkaError as exc:  # uncommitted offsets are re-read by the next owner; merges are idempotent
            log.warning("metrics.last_commit_failed", error=type(exc).__name__)
        for client in (self.consumer, self.producer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), timeout=10)
                except (TimeoutError, KafkaError) as exc:
                    log.warning("metrics.client_stop_failed", error=type(exc).__name__)
        for p in list(self.partitions):
            self._drop(p)
        log.info("metrics.stopped")

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        snapshots = asyncio.create_task(self._snapshot_loop(stop))
        try:
            assert self.consumer is not None
            last_lag = 0.0
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.batch_max_records)
                if batch:
                    async with self.lock:
                        await self.process(batch)
                if time.monotonic() - last_lag >= 1.0:
                    await self._observe_lag()
                    last_lag = time.monotonic()
        finally:
            snapshots.cancel()
            await self.stop()

    # -- one batch -------------------------------------------------------------------------------------
    async def process(self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]) -> None:
        assert self.consumer is not None and self.producer is not None
        started = time.perf_counter()
        changes: dict[int, dict[bytes, bytes]] = {}
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            family = self.names.family_of[tp.topic].value
            part = self.partitions[tp.partition]
            changed = changes.setdefault(tp.partition, {})
            applied = unchanged = invalid = 0
            for rec in records:
                try:
                    event = wire.decode(rec.headers, rec.value)
                except (ValidationError, wire.UnknownEventType, ValueError) as exc:
                    invalid += 1
                    log.warning("event.invalid", topic=tp.topic, partition=tp.partition, offset=rec.offset,
                                error=type(exc).__name__)
                    continue
                out = part.apply(event)
                if out is None:
                    unchanged += 1
                else:
                    changed[out[0]] = out[1]
                    applied += 1
            offsets[tp] = records[-1].offset + 1
            for outcome, n in (("applied", applied), ("unchanged", unchanged), ("invalid", invalid)):
                if n:
                    telemetry.EVENTS.labels(family, outcome).inc(n)
        acks = await self._send_changelog(changes)
        await self.settle()  # the previous batch's commit first: offsets are committed in order
        self._settling = asyncio.ensure_future(self._commit_after(acks, offsets, started))

    async def _commit_after(self, acks: list[asyncio.Future[Any]], offsets: dict[TopicPartition, int],
                            started: float) -> None:
        assert self.consumer is not None
        if acks:
            await asyncio.gather(*acks)
        await self.consumer.commit(offsets)
        telemetry.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def settle(self) -> None:
        """Wait until the last batch's changelog records are acknowledged and its offsets committed."""
        pending, self._settling = self._settling, None
        if pending is not None:
            await pending

    async def _send_changelog(self, changes: dict[int, dict[bytes, bytes]]) -> list[asyncio.Future[Any]]:
        """Hand changed states to the producer (partition = source partition); returns the delivery futures."""
        assert self.producer is not None
        futures: list[asyncio.Future[Any]] = []
        for partition, records in changes.items():
            batch = self.producer.create_batch()
            for key, value in records.items():
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self.producer.send_batch(batch, self.names.changelog, partition=partition))
                    batch = self.producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if batch.record_count():
                futures.append(await self.producer.send_batch(batch, self.names.changelog, partition=partition))
        return futures

    # -- partition ownership ----------------------------------------------------------------------------
    def revoke(self) -> None:
        """Stop exporting everything; states are kept until the next assignment says what stays ours."""
        self.owned.clear()
        self.assigned.clear()
        telemetry.OWNED.set(0)
        telemetry.LAG.clear()

    async def assign(self, assigned: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in assigned}
        for p in set(self.partitions) - numbers:
            self._drop(p)
        await self._restore(sorted(numbers - set(self.partitions)))
        self.assigned = set(assigned)
        self.owned = numbers
        telemetry.OWNED.set(len(numbers))
        log.info("metrics.assigned", partitions=sorted(numbers))

    async def _restore(self, partitions: list[int]) -> None:
        """Rebuild each partition's store and totals from its changelog partition (read to its end offset)."""
        if not partitions:
            return
        parts: dict[int, PartitionState] = {}
        for p in partitions:
            self._dbs[p] = store.open_fresh(self.state_root / f"p{p}")
            parts[p] = PartitionState(p, self._dbs[p])
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False,
                                  client_id=f"metrics-restore-{self.settings.worker_id}",
                                  max_partition_fetch_bytes=8 * 1024 * 1024)
        await reader.start()
        restored = 0
        try:
            tps = [TopicPartition(self.names.changelog, p) for p in partitions]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            end = await reader.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            while pending:
                chunk = await reader.getmany(*pending, timeout_ms=500, max_records=10_000)
                for tp, records in chunk.items():
                    part = parts[tp.partition]
                    for rec in records:
                        if rec.offset < end[tp] and rec.key is not None:
                            part.restore(rec.key, rec.value)
                            restored += 1
                pending = {tp for tp in pending if await reader.position(tp) < end[tp]}
        finally:
            await reader.stop()
        self.partitions.update(parts)
        telemetry.RESTORED.inc(restored)
        log.info("metrics.restored", partitions=partitions, records=restored,
                 communes=sum(len(p.communes) for p in parts.values()))

    def _drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        db = self._dbs.pop(partition, None)
        if db is not None:
            store.discard(db, self.state_root / f"p{partition}")

    # -- periodic work --------------------------------------------------------------------------------
    async def _observe_lag(self) -> None:
        assert self.consumer is not None
        for tp in list(self.assigned):
            end = self.consumer.last_stable_offset(tp) or self.consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = await self.consumer.position(tp)
            except Exception:  # the partition was revoked meanwhile
                continue
            telemetry.LAG.labels(self.names.family_of[tp.topic].value, str(tp.partition)).set(max(0, end - position))

    async def publish_snapshots(self) -> int:
        """One snapshot event per commune of the owned partitions; returns how many."""
        assert self.producer is not None
        now = datetime.fromtimestamp(self.clock(), UTC)
        futures = []
        async with self.lock:
            for part in self.exported():
                for commune, totals in part.communes.items():
                    rec = wire.encode(snapshot(commune, totals, now))
                    futures.append(await self.producer.send(self.names.snapshots, rec.value, key=rec.key,
                                                            headers=rec.headers))
        await asyncio.gather(*futures)
        telemetry.SNAPSHOTS.inc(len(futures))
        return len(futures)

    async def _snapshot_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.snapshot_interval_s)
                return
            except TimeoutError:
                pass
            try:
                n = await self.publish_snapshots()
                log.info("metrics.snapshots", communes=n)
            except KafkaError as exc:
                log.warning("metrics.snapshot_failed", error=type(exc).__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: MetricsWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.worker.lock:  # the batch in flight flushes and commits first
            await self.worker.settle()
            self.worker.revoke()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.worker.lock:
            await self.worker.assign(set(assigned))
