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
cannot commit them; on assignment (`assignment`) a worker pauses the new partitions, reads their
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
from functools import partial
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from schemas.topics import DLQ_INTAKE, INTAKE_DEDUP, scoped
from services.common import aiokafka_compat, clients, closing, joining, kip447, probe, stopping
from services.common.lag import LagGauge
from services.common.readiness import Readiness
from services.common.runtime import Supervisor, Worker, bounded_stop_s
from services.intake import telemetry, transaction
from services.intake.assignment import Assignment
from services.intake.dedup import SeenByPartition
from services.intake.outputs import TransactionOutputs
from services.intake.settings import IntakeSettings
from services.intake.task import Task, TransactionStuck
from services.intake.validate import Topics, Validation, ensure_intake_topics
from services.privacy.intake import IntakePrivacy, key_topic_specs
from services.privacy.settings import PrivacySettings
from services.sources import load_registry
from services.sources.registry import RegistryFileError, SourceRegistry

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
    try:  # at start too: a bad file is one line and the end, not a run failing at each restart (review)
        if settings.sources_file:
            load_registry(settings.sources_file)
    except (RegistryFileError, OSError) as exc:
        raise SystemExit(f"intake: {exc}") from None

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
        self.lock = asyncio.Lock()  # validation, and the partitions arriving or leaving (`assignment`), take turns
        self.consumer: AIOKafkaConsumer | None = None
        self.privacy: IntakePrivacy | None = None
        self._probe: asyncio.Task[None] | None = None
        self._lag: asyncio.Task[None] | None = None
        self.assignment = Assignment(self)
        """The consumer's rebalance listener: partitions made ready on arrival, drained before they leave."""

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        aiokafka_compat.apply(RETRY_BACKOFF_MS)
        await ensure_intake_topics(s, [*self.topics.raw_specs, *key_topic_specs(s.namespace),
                                       *(scoped(t, s.namespace) for t in (DLQ_INTAKE, INTAKE_DEDUP))])
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
        self.task = Task(f"intake-{s.worker_id}", producer)  # before its start: `stop` closes one cancelled mid-start
        # aborts what a predecessor with this worker id left open; bounded: a coordinator that gives no producer id
        # held the run silent for ever, `/healthz` 200; a Kafka error now, the run restarts and the restarts count.
        # A stop meanwhile ends the wait (cancelled, the start closes the producer): it waited out the bound
        starting = closing.start_within("intake", "transactional producer", producer)
        if await stopping.unless_stopped(starting, self.supervisor.stop) is stopping.STOPPED:
            return  # `run` goes straight to the stop
        self.consumer.subscribe(list(self.topics.family_of), listener=self.assignment)
        if not await joining.start_unless_stopped("intake", self.consumer, self.supervisor.stop):
            return  # stopped during the group join: `run` goes straight to the stop
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
        if self.assignment.readying is not None:  # a failed run's partitions still getting ready must not say "ready"
            self.assignment.readying.cancel()
        for task in (self._probe, self._lag):  # they ask the consumer: not while the consumer stops
            if task is not None:
                task.cancel()
        clients_: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.consumer is not None:
            clients_.append(("consumer", partial(joining.stop_member, self.consumer)))  # mid-join: leaves at once
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
        # woken by the stop too: a fetch waits, whatever its timeout, for as long as the group rebalances (a member
        # stalled in it), and the loop went on waiting past the stop's deadline (`service.stop_forced`; audit)
        stopped = asyncio.ensure_future(self.supervisor.stop.wait())
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
                waiting: set[asyncio.Future[Any]] = {fetching, stopped}
                if waiting_records:
                    waiting |= committing
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if fetching.done():
                    batch, fetching = fetching.result(), None
                    if batch:
                        async with self.lock:
                            await self._validate(batch)
            await self.assignment.cancel_readying()  # partitions still getting ready hold nothing validated
            async with self.lock:
                await self.drain(timeout_s)
        finally:
            stopped.cancel()
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

    async def drain(self, timeout_s: float) -> None:
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


def stop_budget_s(settings: IntakeSettings) -> float:
    """The longest SIGTERM can take in a broker outage (infra/compose.yaml's `stop_grace_period` is at least this):
    the transaction in flight gets its timeout (`run` waits for it when the batch is full), the final drain one more,
    then each client stops within `closing.CLOSE_TIMEOUT_S`, one after the other (consumer, producer, and the key
    store when sealing); at most the runtime's `stop_deadline_s`."""
    clients_ = 3 if settings.seal_personal_data else 2
    return bounded_stop_s(settings, 2 * settings.transaction_timeout_ms / 1000 + clients_ * closing.CLOSE_TIMEOUT_S)
