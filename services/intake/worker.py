"""The intake shell: consume raw records, decide each, publish and commit them in transactions per task.

Data flow: `consumer.getmany` -> `validate.Validation` per raw partition (decide,
re-route, encode) -> the outputs of the partition's `task.Task` -> `transaction.publish`
(outputs + input offsets, one transaction per task, group commit). A task is
raw partition number N of all three raw topics (the range assignor keeps them
together) with a transactional producer of its own, `...intake.p<N>` (ADR 0011).

Delivery guarantee: exactly-once from raw topics to canonical + dead-letter
topics for `read_committed` consumers, whatever the producers' keys and even
when a worker stalls past its session timeout. On assignment a worker pauses the
new partitions, starts their tasks' producers (fencing any earlier owner),
restores their de-duplication state, seeks to the committed offsets and only
then resumes them. A failed transaction ends the run (the runtime restarts it
from Kafka), except a fenced one while partitions are being given up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, RAW, scoped
from services.common import aiokafka_compat, clients
from services.common.admin import ensure_topics
from services.common.rebalance import RebalanceListener
from services.common.runtime import Supervisor, Worker
from services.intake import telemetry, transaction
from services.intake.decide import SourcePolicy, allow_all
from services.intake.dedup import SeenByPartition
from services.intake.outputs import TransactionOutputs
from services.intake.restore import restore_seen
from services.intake.settings import IntakeSettings
from services.intake.task import Task, TransactionStuck
from services.intake.validate import Topics, Validation
from services.sources import is_allowed, load_registry

log = structlog.get_logger("intake")
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
        self.topics = Topics.of(settings.namespace)
        self.seen = SeenByPartition()
        self.tasks: dict[int, Task] = {}
        self.partitions: dict[str, int] = {}
        """Real partition counts of the raw and canonical topics, read from metadata on assignment."""
        self._lock = asyncio.Lock()  # validation, and the partitions arriving or leaving, take turns
        self.consumer: AIOKafkaConsumer | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        aiokafka_compat.apply(RETRY_BACKOFF_MS)
        await ensure_topics(s, [scoped(t, s.namespace)
                                for t in (*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP)])
        # a fetch waits (at most 5 ms, overlapping the commits in flight) for a few records rather than
        # returning each one or two: every fetch round trip costs the worker CPU. The range assignor gives a
        # worker partition N of every raw topic together: one task, one transactional id.
        self.consumer = clients.consumer(s, client_id=f"intake-{s.worker_id}", group_id=s.group_id,
                                         fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=5,
                                         partition_assignment_strategy=(RangePartitionAssignor,),
                                         session_timeout_ms=s.session_timeout_ms,
                                         heartbeat_interval_ms=s.heartbeat_interval_ms)
        self.consumer.subscribe(list(self.topics.family_of), listener=_Rebalance(self))
        await self.consumer.start()
        log.info("intake.started", group=s.group_id, worker=s.worker_id, topics=list(self.topics.family_of))

    async def stop(self) -> None:
        await self._close(list(self.tasks.values()))
        if self.consumer is not None:
            try:
                await asyncio.wait_for(self.consumer.stop(), timeout=10)
            except (TimeoutError, KafkaError) as exc:  # the broker may be the reason we stop
                log.warning("intake.client_stop_failed", error=type(exc).__name__)
        log.info("intake.stopped")

    async def run(self) -> None:
        """Group commit per task: records keep being fetched and validated while earlier transactions commit.

        Each task has at most one transaction in flight, the worker at most `max_transactions_in_flight`;
        everything a task validated meanwhile goes out in its next one. At most `batch_max_records` (and about
        `batch_max_bytes`) wait validated over all tasks. Returns once `supervisor.stop` is set and everything
        validated is committed.
        """
        await self.start()
        fetching: asyncio.Future[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] | None = None
        try:
            assert self.consumer is not None
            max_records, max_bytes = self.settings.batch_max_records, self.settings.batch_max_bytes
            while not self.supervisor.stop.is_set():
                self._start_transactions()
                waiting_records = sum(t.open.records for t in self.tasks.values() if t.open is not None)
                waiting_bytes = sum(t.open.bytes for t in self.tasks.values() if t.open is not None)
                committing: set[asyncio.Future[Any]] = {t.inflight for t in self.tasks.values()
                                                        if t.inflight is not None}
                if committing and (waiting_records >= max_records or waiting_bytes >= max_bytes):
                    await asyncio.wait(committing, return_when=asyncio.FIRST_COMPLETED)  # full: wait for a commit
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
            async with self._lock:
                await self._drain(list(self.tasks.values()), self.settings.transaction_timeout_ms / 1000)
        finally:
            if fetching is not None:
                fetching.cancel()
            await self.stop()

    # -- group commit per task ------------------------------------------------------------
    def _start_transactions(self) -> None:
        """Start the transactions of tasks with validated records, oldest first, up to the in-flight cap.

        A task's failed transaction is raised here: it ends the run (its successor starts from the committed
        offsets; a fenced task means this worker had lost it already).
        """
        timeout_s = self.settings.transaction_timeout_ms / 1000  # the broker aborts it by then anyway
        for task in self.tasks.values():
            task.collect(timeout_s)
        room = self.settings.max_transactions_in_flight - sum(t.committing for t in self.tasks.values())
        ready = [t for t in self.tasks.values() if t.open is not None and not t.committing]
        for task in sorted(ready, key=lambda t: t.open.opened_at if t.open else 0)[:max(0, room)]:
            task.start(self._publish, timeout_s)

    async def _publish(self, task: Task, out: TransactionOutputs) -> None:
        try:
            await transaction.publish(task.producer, out, self.settings.group_id)
        except transaction.SendFailed:
            telemetry.ABORTED.inc()
            raise
        self.supervisor.health.committed()
        transaction.observe(out, len(self.seen))
        # a full scan of the ids, once a minute after a commit (synchronous: validation never sees it half-done)
        self.seen.expire_due(int(time.time() * 1000))

    async def _drain(self, tasks: list[Task], timeout_s: float) -> None:
        """Commit what `tasks` validated. A fenced task (another worker owns it now), or one whose commit does not
        finish within `timeout_s`, is given up: its next owner fences it and starts from the committed offsets."""
        results = await asyncio.gather(*(t.drain(self._publish, timeout_s) for t in tasks), return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, TransactionStuck) or (
                    isinstance(result, BaseException) and transaction.is_fenced(result)):
                telemetry.FENCED.inc()
                log.warning("intake.task_given_up", task=task.number, worker=self.settings.worker_id,
                            error=type(result).__name__)
            elif isinstance(result, BaseException):
                raise result

    async def _close(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.tasks.pop(task.number, None)
        telemetry.TASKS.set(len(self.tasks))
        await asyncio.gather(*(t.close() for t in tasks))

    # -- the per-record loop ---------------------------------------------------------
    async def _validate(self, batch: Fetched) -> None:
        """Decide every record of `batch` into the outputs of its task's next transaction."""
        validation = Validation(self.topics, self.partitions, self.seen, self.policy, self.settings)
        for tp, records in batch.items():
            task = self.tasks.get(tp.partition)
            start = task.positions.get(tp) if task is not None else None
            if task is None or start is None:
                continue  # fetched before its partition left this worker
            if records[0].offset < start:  # fetched before the task (re)started: delivered again from `start`
                records = [rec for rec in records if rec.offset >= start]
                if not records:
                    continue
            task.positions[tp] = records[-1].offset + 1
            await validation.partition(tp, records, task.outputs(self.partitions))

    # -- partitions arriving and leaving ---------------------------------------------------
    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Fence the earlier owners of the new tasks, restore their state, seek to their commits; then ready."""
        assert self.consumer is not None
        self.consumer.pause(*partitions)  # before any await: nothing of them is fetched until the task is ready
        async with self._lock:
            numbers = sorted({tp.partition for tp in partitions} - set(self.tasks))
            for n in numbers:
                if {tp.topic for tp in partitions if tp.partition == n} != set(self.topics.family_of):
                    log.warning("intake.task_split", task=n)  # another assignor in the group: tasks fence each other
            await asyncio.gather(*(self._open_task(n) for n in numbers))
            if self.tasks and not self.partitions:
                producer = next(iter(self.tasks.values())).producer
                self.partitions = {t: len(await producer.partitions_for(t)) for t in self.topics.counted}
            wanted = {(self.topics.family_of[tp.topic], tp.partition) for tp in partitions}
            await restore_seen(self.settings, self.topics.changelog, self.seen.missing(wanted), self.seen)
            ordered = sorted(tp for tp in partitions if tp.partition in numbers)
            committed = await asyncio.gather(*(self.consumer.committed(tp) for tp in ordered))
            for tp, offset in zip(ordered, committed, strict=True):
                if offset is not None:
                    self.consumer.seek(tp, offset)  # read after the fence: the earlier owner's last commit included
                self.tasks[tp.partition].positions[tp] = offset or 0
        self.consumer.resume(*partitions)
        telemetry.TASKS.set(len(self.tasks))
        self.supervisor.health.set_ready(True, f"assigned {len(partitions)} raw partitions, restored")

    async def _open_task(self, number: int) -> None:
        s = self.settings
        producer = clients.transactional_producer(
            s, transactional_id=s.task_transactional_id(number), client_id=f"intake-{s.worker_id}-p{number}",
            transaction_timeout_ms=s.transaction_timeout_ms, linger_ms=0, max_batch_size=BATCH_BYTES,
            retry_backoff_ms=RETRY_BACKOFF_MS,
        )
        await producer.start()  # fences the earlier owner of the task: its open transaction is aborted
        self.tasks[number] = Task(number, producer)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is validated and in flight first (unless fenced), then close the tasks, drop their state."""
        self.supervisor.health.set_ready(False, "partitions revoked")
        async with self._lock:
            leaving = [t for n, t in self.tasks.items() if n in {tp.partition for tp in partitions}]
            try:  # within the rebalance timeout (the session timeout), or the group moves on without this worker
                await self._drain(leaving, self.settings.session_timeout_ms / 1000)
            finally:
                await self._close(leaving)
                self.seen.forget(self.topics.raw_partitions(partitions))


class _Rebalance(RebalanceListener):
    def __init__(self, worker: IntakeWorker) -> None:
        super().__init__(worker.supervisor.fail)
        self.worker = worker

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.worker.revoked(partitions)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self.worker.assigned(partitions)
