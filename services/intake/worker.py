"""The intake shell: consume raw records, decide each, publish and commit them in transactions (group commit).

Data flow: `consumer.getmany` -> `validate.Validation` per raw partition (decide,
re-route, encode) -> the open outputs of the worker's `task.Task` ->
`transaction.publish` (outputs + input offsets with the group's generation, one
transaction in flight, ADR 0017). The range assignor gives a worker partition N
of all three raw topics together (re-routing and de-duplication state are per N).

Delivery guarantee: exactly-once from raw topics to canonical + dead-letter
topics for `read_committed` consumers, whatever the producers' keys and even
when a worker stalls past its session timeout. Offsets are committed with the
generation they were consumed in (KIP-447), so a worker that lost its partitions
cannot commit them; on assignment a worker pauses the new partitions, reads their
committed offsets once no transaction holds them open (`require_stable`), then
restores their de-duplication state, seeks, and only then resumes them. A failed
transaction ends the run (the runtime restarts it from Kafka), except one refused
for a past generation while partitions are being given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaTimeoutError

from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, scoped
from services.common import aiokafka_compat, clients, closing, kip447, probe
from services.common.admin import ensure_topics
from services.common.lag import LagGauge
from services.common.readiness import Readiness
from services.common.rebalance import RebalanceListener
from services.common.runtime import Supervisor, Worker, bounded_stop_s
from services.intake import telemetry, transaction
from services.intake.dedup import SeenByPartition
from services.intake.outputs import TransactionOutputs
from services.intake.restore import restore_seen
from services.intake.settings import IntakeSettings
from services.intake.task import Task, TransactionStuck
from services.intake.validate import Topics, Validation
from services.privacy.intake import IntakePrivacy, key_topic_specs
from services.privacy.settings import PrivacySettings
from services.sources import load_registry
from services.sources.registry import SourceRegistry

log = structlog.get_logger("intake")
RETRY_BACKOFF_MS = 1
"""A new transaction can meet the previous one's markers still being written (CONCURRENT_TRANSACTIONS); the
default 100 ms back-off (and aiokafka's fixed 20 ms, see `aiokafka_compat`) would dominate raw -> canonical latency."""
FETCH_MIN_BYTES = 32 * 1024
BATCH_BYTES = 512 * 1024
"""Record batches up to this size (a broker's default limit is 1 MiB); a larger single record goes alone."""
Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


def source_registry(settings: IntakeSettings) -> SourceRegistry | None:
    """The source registry `INTAKE_SOURCES_FILE` names (`infra/sources.yaml` by default; a bad file stops the
    worker); None when it is set empty: every source allowed, no bound topics (said at start, as a warning)."""
    if settings.sources_file:
        return load_registry(settings.sources_file)
    log.warning("intake.every_source_allowed", why="INTAKE_SOURCES_FILE is empty: no source registry")
    return None


def intake(settings: IntakeSettings) -> Worker:
    """The worker `services.common.runtime` runs: a fresh `IntakeWorker` (clients, state) for every run."""
    if settings.seal_personal_data and not PrivacySettings().configured:
        raise SystemExit("intake: applicants' personal data must be sealed (INTAKE_SEAL_PERSONAL_DATA, ADR 0015) but "
                         "no key is configured: set PRIVACY_KEK or PRIVACY_KEK_FILE, and PRIVACY_PEPPER or "
                         "PRIVACY_PEPPER_FILE (base64url; `python -m services.privacy.keys` makes a pair)")

    async def run(supervisor: Supervisor) -> None:
        await IntakeWorker(settings, supervisor, source_registry(settings)).run()
    return run


class IntakeWorker:
    def __init__(self, settings: IntakeSettings, supervisor: Supervisor,
                 registry: SourceRegistry | None = None) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.readiness = Readiness(supervisor.health)
        """/readyz: partitions assigned and restored, and the broker answering the probe."""
        self.topics = Topics.of(settings.namespace, registry)
        self.seen = SeenByPartition()
        self.task: Task | None = None
        """The worker's producer and transactions, from `start` to `stop`."""
        self.partitions: dict[str, int] = {}
        """Real partition counts of the raw and canonical topics, read from metadata on assignment."""
        self._lock = asyncio.Lock()  # validation, and the partitions arriving or leaving, take turns
        self.consumer: AIOKafkaConsumer | None = None
        self.privacy: IntakePrivacy | None = None
        self._probe: asyncio.Task[None] | None = None
        self._lag: asyncio.Task[None] | None = None
        self._readying: asyncio.Task[None] | None = None
        """Making the last assigned partitions ready (`_ready`), until done or revoked."""

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        aiokafka_compat.apply(RETRY_BACKOFF_MS)
        await ensure_topics(s, [*self.topics.raw_specs, *key_topic_specs(s.namespace),
                                *(scoped(t, s.namespace) for t in (*CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP))])
        if s.seal_personal_data:  # the key store is read to its end first, then followed for the whole run
            self.privacy = IntakePrivacy(s, s.namespace, PrivacySettings(), client_id=f"intake-{s.worker_id}")
            await self.privacy.start(self.supervisor.spawn)
        # a fetch waits (at most 5 ms, overlapping the commits in flight) for a few records rather than
        # returning each one or two: every fetch round trip costs the worker CPU. The range assignor gives a
        # worker partition N of every raw topic together (re-routing and de-duplication state are per N).
        self.consumer = clients.consumer(s, client_id=f"intake-{s.worker_id}", group_id=s.group_id,
                                         fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=5,
                                         partition_assignment_strategy=(RangePartitionAssignor,),
                                         session_timeout_ms=s.session_timeout_ms,
                                         heartbeat_interval_ms=s.heartbeat_interval_ms)
        producer = clients.transactional_producer(
            s, transactional_id=s.transactional_id, client_id=f"intake-{s.worker_id}",
            transaction_timeout_ms=s.transaction_timeout_ms, linger_ms=0, max_batch_size=BATCH_BYTES,
            retry_backoff_ms=RETRY_BACKOFF_MS,
        )
        await producer.start()  # aborts what a predecessor with this worker id left open
        self.task = Task(f"intake-{s.worker_id}", producer)
        self.consumer.subscribe(list(self.topics.family_of), listener=_Rebalance(self))
        await self.consumer.start()
        # an idle worker whose broker is gone sees nothing wrong (fetches return nothing): the probe tells /readyz
        consumer, probed = self.consumer, [TopicPartition(next(iter(self.topics.family_of)), 0)]
        self._probe = self.supervisor.spawn("probe", probe.probe_loop(
            lambda: probe.broker_answers(consumer, probed),
            lambda answers: self.readiness.kafka(None if answers else "broker unreachable")))
        self._lag = self.supervisor.spawn("consumer-lag", LagGauge("intake").watch([consumer]))
        log.info("intake.started", group=s.group_id, worker=s.worker_id, topics=list(self.topics.family_of))

    async def stop(self) -> None:
        """Close every client, each whatever became of the others. The consumer goes first: one left running (its
        stop cut short when the run ended with a broker gone) would rejoin the group when the broker comes back
        and hold partitions that nobody in this process validates any more."""
        self.readiness.not_owning("stopping")
        if self._readying is not None:  # a failed run's partitions still getting ready must not report "ready" now
            self._readying.cancel()
        for task in (self._probe, self._lag):  # they ask the consumer: not while the consumer stops
            if task is not None:
                task.cancel()
        clients_: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.consumer is not None:
            clients_.append(("consumer", self.consumer.stop))
        if self.task is not None:
            clients_.append(("producer", self.task.close))
        if self.privacy is not None:
            clients_.append(("key store", self.privacy.stop))
        for name, stop in clients_:
            with contextlib.suppress(asyncio.CancelledError):  # the next client is closed all the same
                await closing.close_within("intake", name, stop)
        log.info("intake.stopped")

    async def run(self) -> None:
        """Group commit: records keep being fetched and validated while earlier transactions commit.

        One transaction in flight; everything validated meanwhile goes out in the next one. At most
        `batch_max_records` (and about `batch_max_bytes`) wait validated. Returns once `supervisor.stop` is set
        and everything validated is committed.
        """
        fetching: asyncio.Future[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] | None = None
        try:
            # inside: a start that fails part way closes what it opened (review: the key store's folder on disk was
            # left behind, one more at each restart of the run in a broker outage)
            await self.start()
            assert self.consumer is not None and self.task is not None
            task = self.task
            max_records, max_bytes = self.settings.batch_max_records, self.settings.batch_max_bytes
            timeout_s = self.settings.transaction_timeout_ms / 1000  # the broker aborts it by then anyway
            while not self.supervisor.stop.is_set():
                task.start(self._publish, timeout_s)  # raises a failed transaction: the run ends
                waiting_records = task.open.records if task.open is not None else 0
                waiting_bytes = task.open.bytes if task.open is not None else 0
                committing: set[asyncio.Future[Any]] = {task.inflight} if task.inflight is not None else set()
                if committing and (waiting_records >= max_records or waiting_bytes >= max_bytes):
                    await task.wait_inflight(timeout_s)  # full: wait for the commit, or until it is stuck
                    continue
                if fetching is None:
                    room = max(1, max_records - waiting_records)
                    fetching = asyncio.ensure_future(self.consumer.getmany(timeout_ms=100, max_records=room))
                # wake for new records, or for a commit when validated records wait for it
                waiting: set[asyncio.Future[Any]] = {fetching}
                if waiting_records:
                    waiting |= committing
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if fetching.done():
                    batch, fetching = fetching.result(), None
                    if batch:
                        async with self._lock:
                            await self._validate(batch)
            await self._cancel_readying()  # partitions still getting ready hold nothing validated
            async with self._lock:
                await self._drain(timeout_s)
        finally:
            if fetching is not None:
                fetching.cancel()
            await self.stop()

    # -- group commit ---------------------------------------------------------------------------
    async def _publish(self, task: Task, out: TransactionOutputs) -> None:
        assert self.consumer is not None
        try:  # the generation now: the revoke callback drains before a rebalance moves any partition
            await transaction.publish(task.producer, out, kip447.GroupMetadata.of(self.consumer))
        except transaction.SendFailed:
            telemetry.ABORTED.inc()
            raise
        self.supervisor.health.committed()
        transaction.observe(out, len(self.seen))
        # a full scan of the ids, once a minute after a commit (synchronous: validation never sees it half-done)
        self.seen.expire_due(int(time.time() * 1000))

    async def _drain(self, timeout_s: float) -> None:
        """Commit what was validated. A transaction refused because the partitions belong to another member now
        (this worker was evicted) is given up: what it held is consumed again by their owner. Anything else, and a
        commit not done within `timeout_s`, raises (the run ends, its producer with it)."""
        assert self.task is not None
        try:
            await self.task.drain(self._publish, timeout_s)
        except Exception as exc:
            if isinstance(exc, TransactionStuck) or not transaction.is_fenced(exc):
                raise
            telemetry.FENCED.inc()
            self.task.cancel()
            log.warning("intake.transaction_given_up", worker=self.settings.worker_id, error=type(exc).__name__)

    # -- the per-record loop ---------------------------------------------------------
    async def _validate(self, batch: Fetched) -> None:
        """Decide every record of `batch` into the outputs of its task's next transaction."""
        validation = Validation(self.topics, self.partitions, self.seen, self.settings, self.privacy)
        task = self.task
        assert task is not None
        for tp, records in batch.items():
            start = task.positions.get(tp)
            if start is None:
                continue  # fetched before its partition left this worker
            if records[0].offset < start:  # fetched before the task (re)started: delivered again from `start`
                records = [rec for rec in records if rec.offset >= start]
                if not records:
                    continue
            task.positions[tp] = records[-1].offset + 1
            await validation.partition(tp, records, task.outputs(self.partitions))

    # -- partitions arriving and leaving ---------------------------------------------------
    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Pause the new partitions at once, and make them ready in a supervised task of its own.

        Getting ready can wait a while (a predecessor's transaction holding the offsets open, a long restore):
        inside the rebalance callback that wait would stop the consumer's heartbeats, and a callback longer than
        the session timeout gets the member evicted, its first commit refused. So the callback returns at once;
        the partitions stay paused until `_ready` has read their offsets, restored their state and sought.
        """
        assert self.consumer is not None
        self.consumer.pause(*partitions)  # before any await: nothing of them is fetched until they are ready
        self._readying = self.supervisor.spawn("assign", self._ready(set(partitions)))

    async def _ready(self, partitions: set[TopicPartition]) -> None:
        """Read the new partitions' committed offsets once stable, restore their state, seek to them; then ready.

        The waits on the broker are bounded (twice the transaction timeout each, or without a record read for that
        long: a Kafka error, the run restarts) and hold no lock: validation and the final drain never wait on them.
        Nothing validated depends on them meanwhile: the partitions stay paused, and their state is their own.
        """
        assert self.consumer is not None and self.task is not None
        wait_s = 2 * self.settings.transaction_timeout_ms / 1000
        numbers = {tp.partition for tp in partitions}
        for n in sorted(numbers):
            if {tp.topic for tp in partitions if tp.partition == n} != set(self.topics.family_of):
                log.warning("intake.partitions_split", partition=n)  # another assignor in the group
        if not self.partitions:  # where records go: re-routed raw, canonical, data keys (batched by partition)
            self.partitions = await self._partition_counts(wait_s)
        # waits while another member's transaction holds offsets of these partitions open (paused, stalled):
        # it commits or the broker aborts it after the transaction timeout; its changelog records likewise
        committed = await kip447.fetch_stable_offsets(self.consumer, partitions, timeout_s=wait_s)
        wanted = {(self.topics.family_of[tp.topic], tp.partition) for tp in partitions}
        await restore_seen(self.settings, self.topics.changelog, self.seen.missing(wanted), self.seen, stall_s=wait_s)
        async with self._lock:
            for tp in sorted(partitions):
                offset = committed.get(tp)
                if offset is not None:
                    self.consumer.seek(tp, offset)
                self.task.positions[tp] = offset or 0
            telemetry.TASKS.set(len({tp.partition for tp in self.task.positions}))
        self.consumer.resume(*partitions)
        self.readiness.owning(f"assigned {len(partitions)} raw partitions, restored")

    async def _partition_counts(self, timeout_s: float) -> dict[str, int]:
        """The real partition counts of the topics records go to, read from metadata within `timeout_s`."""
        assert self.task is not None
        counted = [*self.topics.counted, *(t.name for t in key_topic_specs(self.settings.namespace))]
        try:
            async with asyncio.timeout(timeout_s):
                return {t: len(await self.task.producer.partitions_for(t)) for t in counted}
        except TimeoutError:
            raise KafkaTimeoutError(f"no metadata of intake's output topics within {timeout_s:g} s") from None

    async def _cancel_readying(self) -> None:
        """Stop making partitions ready (they are leaving, or the run ends): nothing of them was validated yet."""
        if self._readying is not None and not self._readying.done():
            self._readying.cancel()
            await asyncio.wait({self._readying})
        self._readying = None

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is validated and in flight (unless the group refuses it), then drop the partitions' state."""
        self.readiness.not_owning("partitions revoked")
        await self._cancel_readying()
        async with self._lock:
            assert self.task is not None
            try:  # within the rebalance timeout (the session timeout), or the group moves on without this worker
                await self._drain(self.settings.session_timeout_ms / 1000)
            finally:
                for tp in partitions:
                    self.task.positions.pop(tp, None)
                self.seen.forget(self.topics.raw_partitions(partitions))
                telemetry.TASKS.set(len({tp.partition for tp in self.task.positions}))


def stop_budget_s(settings: IntakeSettings) -> float:
    """The longest SIGTERM can take in a broker outage (infra/compose.yaml's `stop_grace_period` is at least this):
    the transaction in flight gets its timeout (`run` waits for it when the batch is full), the final drain one more,
    then each client stops within `closing.CLOSE_TIMEOUT_S`, one after the other (consumer, producer, and the key
    store when sealing); at most the runtime's `stop_deadline_s`."""
    clients_ = 3 if settings.seal_personal_data else 2
    return bounded_stop_s(settings, 2 * settings.transaction_timeout_ms / 1000 + clients_ * closing.CLOSE_TIMEOUT_S)


class _Rebalance(RebalanceListener):
    def __init__(self, worker: IntakeWorker) -> None:
        super().__init__(worker.supervisor.fail)
        self.worker = worker

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.worker.revoked(partitions)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self.worker.assigned(partitions)
