"""The intake shell: consume raw records, decide each, publish and commit them in transactions (group commit).

Data flow: `consumer.getmany` -> `decide.Decider` per record -> `outputs.TransactionOutputs`
-> `transaction.publish` (outputs + input offsets, one transaction). De-duplication
state (`dedup.SeenByPartition`) moves with the raw partitions: restored on
assignment (`restore.restore_seen`), dropped on revoke after the in-flight work
is committed.

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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from schemas import wire
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, RAW, scoped
from services.common import aiokafka_compat, clients
from services.common.admin import ensure_topics
from services.common.rebalance import RebalanceListener
from services.common.runtime import Supervisor, Worker
from services.intake import transaction
from services.intake.decide import Decider, SourcePolicy, allow_all
from services.intake.dedup import SeenByPartition, changelog_record
from services.intake.normalise import Accepted
from services.intake.outputs import TransactionOutputs
from services.intake.restore import restore_seen
from services.intake.settings import IntakeSettings
from services.sources import is_allowed, load_registry

log = structlog.get_logger("intake")
YIELD_AFTER_S = 0.002
"""Validation gives the event loop a turn this often, so the commit in flight keeps moving."""
RETRY_BACKOFF_MS = 1
"""A new transaction can meet the previous one's markers still being written (CONCURRENT_TRANSACTIONS); the
default 100 ms back-off (and aiokafka's fixed 20 ms, see `aiokafka_compat`) would dominate raw -> canonical latency."""
FETCH_MIN_BYTES = 32 * 1024
BATCH_BYTES = 512 * 1024
"""Record batches up to this size (a broker's default limit is 1 MiB); a larger single record goes alone."""
Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


def source_policy(settings: IntakeSettings) -> SourcePolicy:
    """The source registry when `INTAKE_SOURCES_FILE` names one (a bad file stops the worker); else allow all."""
    if not settings.sources_file:
        return allow_all
    return partial(is_allowed, load_registry(settings.sources_file))


def intake(settings: IntakeSettings) -> Worker:
    """The worker `services.common.runtime` runs: a fresh `IntakeWorker` (clients, state) for every run."""
    async def run(supervisor: Supervisor) -> None:
        await IntakeWorker(settings, supervisor, source_policy(settings)).run()
    return run


class IntakeWorker:
    def __init__(self, settings: IntakeSettings, supervisor: Supervisor, policy: SourcePolicy = allow_all) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.policy = policy
        ns = settings.namespace
        self.family_of = {scoped(RAW[f], ns).name: f for f in Family}
        self.canonical = {f: scoped(CANONICAL[f], ns).name for f in Family}
        self.dlq = scoped(DLQ_INTAKE, ns).name
        self.changelog = scoped(INTAKE_DEDUP, ns).name
        self.seen = SeenByPartition()
        self._lock = asyncio.Lock()
        self._open: TransactionOutputs | None = None  # validated, waiting for the next transaction
        self._inflight: asyncio.Task[None] | None = None  # the transaction being committed
        self._failed: BaseException | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        aiokafka_compat.apply(RETRY_BACKOFF_MS)
        await ensure_topics(s, [scoped(t, s.namespace)
                                for t in (*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP)])
        client_id = f"intake-{s.worker_id}"
        self.producer = clients.transactional_producer(
            s, transactional_id=s.transactional_id, client_id=client_id,
            transaction_timeout_ms=s.transaction_timeout_ms, linger_ms=0, max_batch_size=BATCH_BYTES,
            retry_backoff_ms=RETRY_BACKOFF_MS,
        )
        await self.producer.start()  # fences and aborts a killed predecessor's open transaction
        # a fetch waits (at most 5 ms, overlapping the commit in flight) for a few records rather than
        # returning each one or two: every fetch round trip costs the worker CPU
        self.consumer = clients.consumer(s, client_id=client_id, group_id=s.group_id,
                                         fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=5)
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

    async def run(self) -> None:
        """Group commit: records keep being fetched and validated while the previous transaction commits.

        At most one transaction is in flight; everything validated meanwhile (up to
        `batch_max_records` and about `batch_max_bytes`) goes out in the next one. The broker round trips of a commit
        and the CPU time of validation overlap, so a record waits for one commit, not two. Returns once
        `supervisor.stop` is set and everything validated is committed.
        """
        await self.start()
        fetching: asyncio.Future[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] | None = None
        try:
            assert self.consumer is not None
            while not self.supervisor.stop.is_set():
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

    # -- group commit ---------------------------------------------------------------
    async def _maybe_publish(self) -> None:
        """Start the next transaction when the previous one is done and something is validated.

        The transaction runs as a task this worker owns: it is awaited here (its failure is raised
        here) or, when the run fails, cancelled in `run`.
        """
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

    async def _publish(self, out: TransactionOutputs) -> None:
        assert self.producer is not None
        await transaction.publish(self.producer, out, self.settings.group_id)
        self.supervisor.health.committed()
        transaction.observe(out, len(self.seen))
        # a full scan of the ids, once a minute after a commit (synchronous: validation never sees it half-done)
        self.seen.expire_due(int(time.time() * 1000))

    # -- the per-record loop ---------------------------------------------------------
    async def _validate(self, batch: Fetched) -> None:
        """Decide every record of `batch` into the outputs of the next transaction."""
        producer = self.producer
        assert producer is not None
        if self._open is None:
            counts = {t: len(await producer.partitions_for(t)) for t in self.canonical.values()}
            self._open = TransactionOutputs(producer, counts)
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
            seen = self.seen.of(family, tp.partition)
            decide = Decider(family, tp.topic, tp.partition, seen, self.policy, self.settings.max_record_bytes,
                             rejected_at).decide
            published: list[str] = []
            for rec in records:
                if (now := time.perf_counter()) >= next_yield:  # let the client answer the broker meanwhile
                    await asyncio.sleep(0)
                    next_yield = now + YIELD_AFTER_S
                decision = decide(rec.value, rec.headers, rec.offset)
                if isinstance(decision, Accepted):
                    event = decision.event
                    out.canonical(canonical, wire.encode(event))
                    seen.add(event.id, now_ms)
                    published.append(event.id)
                    continue
                out.dead_letter(self.dlq, rec.value, rec.key, rec.headers, decision)
                out.outcomes[(family, decision.reason)] += 1
                log.info("record.rejected", reason=decision.reason.value, field=decision.field, family=family.value,
                         topic=tp.topic, partition=tp.partition, offset=rec.offset)
            if published:
                out.outcomes[(family, None)] += len(published)
                key, value = changelog_record(family.value, tp.partition, records[0].offset, published, now_ms)
                out.changelog(self.changelog, tp.partition, key, value)

    # -- partitions arriving and leaving ---------------------------------------------------
    def _raw_partitions(self, partitions: set[TopicPartition]) -> set[tuple[Family, int]]:
        return {(self.family_of[tp.topic], tp.partition) for tp in partitions}

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Restore the de-duplication state of newly assigned raw partitions; then the worker is ready."""
        wanted = self.seen.missing(self._raw_partitions(partitions))
        await restore_seen(self.settings, self.changelog, wanted, self.seen)
        self.supervisor.health.set_ready(True, f"assigned {len(partitions)} raw partitions, restored")

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is validated and in flight first (we still own it), then drop the partitions' state."""
        self.supervisor.health.set_ready(False, "partitions revoked")
        async with self._lock:
            await self._drain()
            self.seen.forget(self._raw_partitions(partitions))


class _Rebalance(RebalanceListener):
    def __init__(self, worker: IntakeWorker) -> None:
        super().__init__(worker.supervisor.fail)
        self.worker = worker

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.worker.revoked(partitions)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self.worker.assigned(partitions)
