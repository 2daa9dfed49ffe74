"""The intake shell: consume raw records, `normalise`, publish, commit — in Kafka transactions (group commit).

Delivery guarantee: exactly-once from raw topics to canonical + dead-letter
topics for `read_committed` consumers. A transaction's canonical records, dead
letters, de-duplication changelog entries and consumed offsets are committed
atomically; a worker killed mid-batch leaves an aborted transaction and its
successor (same `worker_id`, hence same transactional id) fences it and
re-processes from the last committed offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer import sender as _aiokafka_sender
from aiokafka.producer.message_accumulator import BatchBuilder

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason, Rejection
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, MAX_RECORD_BYTES, RAW, scoped
from services.common.admin import ensure_topics
from services.intake import telemetry
from services.intake.dedup import SeenIds, changelog_record, read_changelog_record
from services.intake.normalise import Accepted, Rejected, normalise, reject
from services.intake.settings import IntakeSettings

log = structlog.get_logger("intake")
EXPIRY_INTERVAL_MS = 60_000
YIELD_AFTER_S = 0.002
"""Validation gives the event loop a turn this often, so the commit in flight keeps moving."""
RETRY_BACKOFF_MS = 1
FETCH_MIN_BYTES = 32 * 1024

# aiokafka retries the first AddPartitionsToTxn of a transaction that meets CONCURRENT_TRANSACTIONS (the previous
# transaction's markers still being written, KAFKA-5477) after a fixed 20 ms. The Java client waits
# min(20 ms, retry.backoff.ms); so do we: on loopback the markers take a millisecond or two.
_aiokafka_sender.BACKOFF_OVERRIDE = min(_aiokafka_sender.BACKOFF_OVERRIDE, RETRY_BACKOFF_MS / 1000)
BATCH_BYTES = 512 * 1024
"""Record batches up to this size (a broker's default limit is 1 MiB); a larger single record goes alone."""


class SourcePolicy(Protocol):
    """Decides whether an event's source may publish it (the source registry); None = allowed."""

    def __call__(self, source: str, family: Family, commune: str) -> Rejection | None: ...


def allow_all(source: str, family: Family, commune: str) -> Rejection | None:
    return None


class IntakeWorker:
    def __init__(self, settings: IntakeSettings, policy: SourcePolicy = allow_all) -> None:
        self.settings = settings
        self.policy = policy
        ns = settings.namespace
        self.family_of = {scoped(RAW[f], ns).name: f for f in Family}
        self.canonical = {f: scoped(CANONICAL[f], ns).name for f in Family}
        self.dlq = scoped(DLQ_INTAKE, ns).name
        self.changelog = scoped(INTAKE_DEDUP, ns).name
        self.seen: dict[tuple[Family, int], SeenIds] = {}
        self._next_expiry_ms = 0
        self._lock = asyncio.Lock()
        self._open: _Outputs | None = None  # validated, waiting for the next transaction
        self._inflight: asyncio.Task[None] | None = None  # the transaction being committed
        self._failed: BaseException | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        topics = [scoped(t, s.namespace) for t in (*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP)]
        await ensure_topics(s.bootstrap, topics)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap, transactional_id=s.transactional_id, enable_idempotence=True,
            transaction_timeout_ms=s.transaction_timeout_ms, max_request_size=MAX_RECORD_BYTES + 65536,
            linger_ms=0, client_id=f"intake-{s.worker_id}", max_batch_size=BATCH_BYTES,
            # a new transaction can meet the previous one's markers still being written (CONCURRENT_TRANSACTIONS);
            # the default 100 ms back-off would then dominate raw -> canonical latency
            retry_backoff_ms=RETRY_BACKOFF_MS,
        )
        await self.producer.start()  # fences and aborts a killed predecessor's open transaction
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap, group_id=s.group_id, client_id=f"intake-{s.worker_id}",
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            # a fetch waits (at most 5 ms, overlapping the commit in flight) for a few records rather than
            # returning each one or two: every fetch round trip costs the worker CPU
            fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=5, max_partition_fetch_bytes=MAX_RECORD_BYTES + 65536,
        )
        self.consumer.subscribe(list(self.family_of), listener=_Rebalance(self))
        await self.consumer.start()
        log.info("intake.started", group=s.group_id, transactional_id=s.transactional_id, topics=list(self.family_of))

    async def stop(self) -> None:
        for client in (self.consumer, self.producer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), timeout=10)
                except (TimeoutError, KafkaError) as exc:  # the broker may be the reason we stop
                    log.warning("intake.client_stop_failed", error=type(exc).__name__)
        log.info("intake.stopped")

    async def run(self, stop: asyncio.Event) -> None:
        """Group commit: records keep being fetched and validated while the previous transaction commits.

        At most one transaction is in flight; everything validated meanwhile (up to
        `batch_max_records` and about `batch_max_bytes`) goes out in the next one. The broker round trips of a commit
        and the CPU time of validation overlap, so a record waits for one commit, not two.
        """
        await self.start()
        fetching: asyncio.Future[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] | None = None
        try:
            assert self.consumer is not None
            while not stop.is_set():
                await self._maybe_publish()
                max_records = self.settings.batch_max_records
                if self._open is not None and self._open.full(max_records, self.settings.batch_max_bytes):
                    # full: wait for the transaction in flight
                    assert self._inflight is not None
                    await asyncio.wait({self._inflight})
                    continue
                if fetching is None:
                    room = max_records - (self._open.records if self._open else 0)
                    fetching = asyncio.ensure_future(self.consumer.getmany(timeout_ms=100, max_records=room))
                # wake for new records, or for the commit in flight when validated records wait for it
                waiting: set[asyncio.Future[Any]] = {fetching}
                if self._open is not None and self._inflight is not None:
                    waiting.add(self._inflight)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if fetching.done():
                    batch, fetching = fetching.result(), None
                    if batch:
                        async with self._lock:
                            await self._validate(batch)
            async with self._lock:
                await self._drain()
        finally:
            if fetching is not None:
                fetching.cancel()
            if self._inflight is not None and not self._inflight.done():
                self._inflight.cancel()  # only on failure: its transaction is aborted or fenced by our successor
            await self.stop()

    async def _maybe_publish(self) -> None:
        """Start the next transaction when the previous one is done and something is validated."""
        if self._failed is not None:
            raise self._failed
        if self._inflight is not None:
            if not self._inflight.done():
                return
            inflight, self._inflight = self._inflight, None
            if (exc := inflight.exception()) is not None:
                # a failed commit ends this worker for good (the records validated since are never published
                # by it); its successor starts from the committed offsets
                self._failed = exc
                raise exc
        if self._open is not None:
            out, self._open = self._open, None
            self._inflight = asyncio.create_task(self._publish(out))

    async def _drain(self) -> None:
        """Commit everything validated so far (before partitions are revoked, and on stop)."""
        while self._inflight is not None or self._open is not None:
            if self._inflight is not None:
                await asyncio.wait({self._inflight})
            await self._maybe_publish()

    # -- one transaction per group of batches ------------------------------------------
    async def _publish(self, out: _Outputs) -> None:
        producer = self.producer
        assert producer is not None
        started = time.perf_counter()
        async with producer.transaction():
            # every output at once, so the transaction adds its partitions in one request; canonical
            # records as one record batch per partition (aiokafka's batch API): a per-record `send`
            # costs a coroutine and a future each, more than validating the record
            await out.flush()
            await producer.send_offsets_to_transaction(out.offsets, self.settings.group_id)
        telemetry.TRANSACTION.observe(time.perf_counter() - started)
        self._observe(out)
        now_ms = int(time.time() * 1000)
        if now_ms >= self._next_expiry_ms:  # a full scan of the ids: once a minute, not per batch
            for seen_ids in self.seen.values():
                seen_ids.expire(now_ms)
            self._next_expiry_ms = now_ms + EXPIRY_INTERVAL_MS

    async def _validate(self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]) -> None:
        """Validate `batch` into the outputs of the next transaction."""
        producer = self.producer
        assert producer is not None
        if self._open is None:
            self._open = _Outputs(producer, {t: await _partition_count(producer, t) for t in self.canonical.values()})
        out = self._open
        now_ms = int(time.time() * 1000)
        rejected_at = datetime.now(UTC).isoformat()
        next_yield = time.perf_counter() + YIELD_AFTER_S
        for tp, records in batch.items():
            out.offsets[tp] = records[-1].offset + 1
            out.records += len(records)
            out.bytes += sum(len(rec.value or b"") for rec in records)
            out.timestamps.extend(rec.timestamp for rec in records)
            family = self.family_of[tp.topic]
            canonical = self.canonical[family]
            seen = self.seen.setdefault((family, tp.partition), SeenIds())
            published: list[str] = []
            for rec in records:
                if (now := time.perf_counter()) >= next_yield:  # let the client answer the broker meanwhile
                    await asyncio.sleep(0)
                    next_yield = now + YIELD_AFTER_S
                outcome = normalise(family, rec.value, rec.headers, self.settings.max_record_bytes)
                if isinstance(outcome, Accepted):
                    event = outcome.event
                    if (denied := self.policy(event.source, family, event.commune)) is not None:
                        outcome = Rejected(denied, (denied,))
                    elif event.id in seen:
                        outcome = reject(Reason.DUPLICATE_EVENT, "id", f"id: event {event.id} was already published")
                    else:
                        out.canonical(canonical, wire.encode(event))
                        seen.add(event.id, now_ms)
                        published.append(event.id)
                        out.outcomes[(family, None)] += 1
                        continue
                r = outcome.rejection
                context = DeadLetterContext(
                    reason=r.reason, field=r.field, message=r.message, source_topic=tp.topic,
                    source_partition=tp.partition, source_offset=rec.offset, rejected_at=rejected_at,
                )
                out.other(self.dlq, rec.value, rec.key, [*rec.headers, *context.headers()])
                out.outcomes[(family, r.reason)] += 1
                log.info("record.rejected", reason=r.reason.value, field=r.field, family=family.value,
                         topic=tp.topic, partition=tp.partition, offset=rec.offset)
            if published:
                key, value = changelog_record(family.value, tp.partition, records[0].offset, published, now_ms)
                out.other(self.changelog, value, key, [], partition=tp.partition)

    def _observe(self, out: _Outputs) -> None:
        committed_ms = time.time() * 1000
        telemetry.BATCH.observe(out.records)
        for timestamp in out.timestamps:
            telemetry.LATENCY.observe(max(0.0, committed_ms - timestamp) / 1000)
        for (family, reason), n in out.outcomes.items():
            telemetry.RECORDS_IN.labels(family.value).inc(n)
            if reason is None:
                telemetry.RECORDS_OUT.labels(family.value).inc(n)
            else:
                telemetry.REJECTED.labels(family.value, reason.value).inc(n)
        telemetry.DEDUP_IDS.set(sum(len(s) for s in self.seen.values()))

    # -- partition-aligned de-duplication state ------------------------------------------
    async def restore(self, partitions: set[TopicPartition]) -> None:
        """Load the changelog partitions matching newly assigned raw partitions."""
        wanted = {(self.family_of[tp.topic], tp.partition) for tp in partitions} - set(self.seen)
        if not wanted:
            return
        numbers = sorted({p for _, p in wanted})
        for key in wanted:
            self.seen[key] = SeenIds()
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, isolation_level="read_committed",
                                  enable_auto_commit=False, client_id="intake-restore")
        await reader.start()
        try:
            tps = [TopicPartition(self.changelog, p) for p in numbers]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            end = await reader.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            restored = 0
            while pending:
                chunk = await reader.getmany(*pending, timeout_ms=500)
                for tp, records in chunk.items():
                    for rec in records:
                        family, at_ms, ids = read_changelog_record(rec.key or b"", rec.value or b"{}")
                        if (Family(family), tp.partition) in wanted:
                            seen = self.seen[(Family(family), tp.partition)]
                            for event_id in ids:
                                seen.add(event_id, at_ms)
                            restored += len(ids)
                pending = {tp for tp in pending if await reader.position(tp) < end[tp]}
            log.info("dedup.restored", partitions=numbers, ids=restored)
        finally:
            await reader.stop()

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.seen.pop((self.family_of[tp.topic], tp.partition), None)


async def _partition_count(producer: AIOKafkaProducer, topic: str) -> int:
    return len(await producer.partitions_for(topic))


@lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    """The Java client's default partitioner hash (murmur2, positive); keys are commune codes, so few."""
    return murmur2(key) & 0x7FFFFFFF


class _Outputs:
    """What one transaction publishes: the validated batches, sent at once, and the input offsets.

    Canonical records are appended to one open record batch per topic-partition;
    partitions are chosen as every Kafka client's default partitioner does
    (murmur2 of the key), so a commune's events land where any producer keyed
    by that commune puts them. Dead letters and changelog records (few) keep
    the ordinary `send`.
    """

    def __init__(self, producer: AIOKafkaProducer, partitions: dict[str, int]) -> None:
        self.producer = producer
        self.partitions = partitions
        self.batches: list[tuple[str, int, BatchBuilder]] = []
        self.open: dict[tuple[str, int], BatchBuilder] = {}
        self.others: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]] = []
        self.outcomes: Counter[tuple[Family, Reason | None]] = Counter()
        self.offsets: dict[TopicPartition, int] = {}
        self.records = 0
        self.bytes = 0
        self.timestamps: list[int] = []

    def canonical(self, topic: str, record: wire.KafkaRecord) -> None:
        slot = (topic, _key_hash(record.key) % self.partitions[topic])
        builder = self.open.get(slot)
        if builder is None or builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers) is None:
            if builder is not None:  # full: it goes as it is, the next one starts
                builder.close()
            builder = self.open[slot] = self.producer.create_batch()
            self.batches.append((*slot, builder))
            builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)

    def full(self, max_records: int, max_bytes: int) -> bool:
        """No room for another fetch: the next records wait for the following transaction."""
        return self.records >= max_records or self.bytes >= max_bytes

    def other(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]],
              partition: int | None = None) -> None:
        self.others.append((topic, value, key, headers, partition))

    async def flush(self) -> None:
        for topic, partition, builder in self.batches:
            builder.close()
            await self.producer.send_batch(builder, topic, partition=partition)
        for topic, value, key, headers, p in self.others:
            await self.producer.send(topic, value, key=key, headers=headers, partition=p)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: IntakeWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.worker._lock:  # commit what is validated and in flight first: we still own it
            await self.worker._drain()
            self.worker.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.restore(set(assigned))
