"""The metrics shell: consume canonical events, merge them into partition state, flush the changelog, commit.

Delivery: at-least-once from the canonical topics, made exact by the state
merge being idempotent (a redelivered event changes nothing). Per batch: apply
every event, then - while the next batch is already being applied - write the
changed states to the changelog (partition = source partition, one transaction
per partition through its fenced writer, ADR 0016) and, once they are
committed, commit the consumed offsets. Commits stay in batch order, and a
revocation (`rebalance`) waits for the last one (a stop for `LAST_SETTLE_S` at most).

Background work runs under the run's `Supervisor`: each batch's commit, the
snapshot loop and the broker probe (`/readyz`). A failed or fenced changelog
transaction, or an offset commit that failed or is past `commit_timeout_ms`,
ends the run (the runtime restarts it from Kafka after a Kafka error); a
snapshot publish that meets a Kafka error is logged, counted and retried at the
next interval, unless its writer is fenced or stuck (`publishing.ends_run`): that ends the
run as a state write's would. Whatever ends a run, the worker stops exporting at once and drops
its state: the next run restores it from the changelog (`ownership`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from services.common import aiokafka_compat, clients, closing, joining, probe, stopping
from services.common.admin import ensure_topics
from services.common.readiness import Readiness
from services.common.runtime import Supervisor, bounded_stop_s
from services.common.stall import StallWatch
from services.metrics import decoding, publishing, telemetry
from services.metrics.exposition import render
from services.metrics.ownership import Batch, Changes, Ownership
from services.metrics.partition import PartitionState
from services.metrics.rebalance import Rebalance
from services.metrics.settings import MetricsSettings
from services.metrics.topics import Names
from services.metrics.writers import PartitionWriter

log = structlog.get_logger("metrics")
Clock = Callable[[], float]
"""Epoch seconds; the overdue gauge, snapshots and which event times are believed (`state.believed_until`) read it."""
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 3.0
COMMIT_LATE_S = 5.0
"""An offset commit in flight longer than this makes the worker not ready (a commit takes milliseconds): the broker
may answer the probe while the group coordinator does not."""
CLOSE_TIMEOUT_S = closing.CLOSE_TIMEOUT_S
"""How long the consumer's stop may take before the process goes on without it (it runs on, never cut short)."""
LAST_SETTLE_S = 5.0
"""How long a stop waits for the last batch's commit; one not done by then is given up (the next owner redoes the
batch: its states are already in the changelog, and redelivered events change nothing)."""
RETRY_BACKOFF_MS = 5
"""A transaction right after the previous one meets its markers still being written (CONCURRENT_TRANSACTIONS):
retried after 5 ms instead of aiokafka's fixed 20 ms (`aiokafka_compat`)."""


class CommitCancelled(Exception):
    """The batch in flight was cancelled before its offsets were committed (the run is ending)."""


class CommitStuck(KafkaError):
    """An offset commit not done within `commit_timeout_ms` (aiokafka retries one for as long as the coordinator is
    unreachable): the run ends and restarts from Kafka."""


class MetricsWorker:
    """One metrics worker: `run` is the runtime's worker (called once per run), `figures` its `/metrics` text."""

    def __init__(self, settings: MetricsSettings, clock: Clock = time.time,
                 decode: decoding.Decode = decoding.fast) -> None:
        """`decode`: how a canonical record becomes an event (the fast path, else the slim views; `decoding.slim` or
        `decoding.full` to compare)."""
        self.settings = settings
        self.clock = clock
        self.names = Names(settings.namespace)
        self.ownership = Ownership(settings.connection(), self.names,
                                   settings.state_dir / settings.group_id / settings.worker_id,
                                   client_id=f"metrics-restore-{settings.worker_id}", new_writer=self._writer,
                                   decode=decode)
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self._supervisor: Supervisor | None = None
        self.readiness: Readiness | None = None
        self._settling: asyncio.Task[None] | None = None
        self._commit_since: float | None = None  # monotonic time the offset commit in flight began
        self._stalls = StallWatch(settings.stall_limit_s)
        self._probe_tp = TopicPartition(self.names.changelog, 0)
        self.restoring: asyncio.Task[None] | None = None
        """The restore of the partitions last assigned, while it runs (`_Rebalance`)."""
        self.stopping = False
        """The run is ending: an assignment the consumer's stop still completes starts no restore."""

    async def stop_restoring(self) -> None:
        """Cancel a restore under way and wait for its end (its partitions are going, or the run is ending)."""
        restoring, self.restoring = self.restoring, None
        if restoring is not None and not restoring.done():
            restoring.cancel()
            await asyncio.wait({restoring})

    def exported(self) -> list[PartitionState]:
        """The partitions to export right now: owned ones only."""
        return self.ownership.exported()

    def figures(self) -> str:
        """The owned partitions' commune figures as exposition text, rendered at scrape time (on the loop)."""
        return render(self.exported(), self.clock())

    # -- one run ----------------------------------------------------------------------------------
    async def run(self, supervisor: Supervisor) -> None:
        """Start the clients and consume until `supervisor.stop`; however the run ends, stop exporting first."""
        self._supervisor = supervisor
        self.stopping = False
        self.readiness = Readiness(supervisor.health)
        self._stalls = StallWatch(self.settings.stall_limit_s)
        background: list[asyncio.Task[None]] = []
        try:
            await self._start(supervisor)
            if supervisor.stop.is_set():  # stopped during the group join, perhaps: nothing to watch
                return
            background.append(supervisor.spawn("snapshots", self._snapshot_loop(supervisor.stop)))
            background.append(supervisor.spawn("probe", self._probe_loop()))
            assert self.consumer is not None
            background.append(supervisor.spawn("consumer-lag", self.ownership.lag.watch([self.consumer])))
            supervisor.spawn("stall-watch", self._stalls.watch())
            await self._consume(supervisor.stop)
        finally:
            for task in background:
                task.cancel()
            await self._stop()

    async def _start(self, supervisor: Supervisor) -> None:
        s = self.settings
        await ensure_topics(s, self.names.specs)
        aiokafka_compat.apply(RETRY_BACKOFF_MS)
        client_id = f"metrics-{s.worker_id}"
        self.consumer = clients.consumer(s, client_id=client_id, group_id=s.group_id, fetch_max_wait_ms=100,
                                         session_timeout_ms=s.session_timeout_ms,
                                         heartbeat_interval_ms=s.heartbeat_interval_ms,
                                         partition_assignment_strategy=(RangePartitionAssignor,),
                                         max_partition_fetch_bytes=4 * 1024 * 1024)
        self.consumer.subscribe(list(self.names.family_of), listener=Rebalance(self, supervisor))
        if await joining.start_unless_stopped("metrics", self.consumer, supervisor.stop):
            log.info("metrics.started", group=s.group_id, worker=s.worker_id)

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        while not stop.is_set():
            # a fetch waits, whatever its timeout, for as long as the group rebalances: not past the stop (audit)
            batch = await stopping.unless_stopped(
                self.consumer.getmany(timeout_ms=200, max_records=self.settings.batch_max_records), stop)
            if isinstance(batch, dict) and batch:
                async with self.lock:
                    await self.process(batch)

    async def _stop(self) -> None:
        """Stop exporting at once (a restarting worker must not serve stale figures), settle a while, close the
        clients."""
        assert self.readiness is not None
        self.stopping = True  # first: a join the consumer's stop completes assigns partitions, and restores nothing
        self.readiness.not_owning("stopping")
        await self.stop_restoring()
        self.ownership.revoke()
        try:
            await self.settle(within_s=LAST_SETTLE_S)
        except Exception as exc:  # the commit task's failure is the supervisor's to report: it ends the run
            log.warning("metrics.last_commit_failed", error=type(exc).__name__)
        finally:
            if self.consumer is not None:  # shielded: `wait_for` would cancel aiokafka's coordinator half-way
                with suppress(asyncio.CancelledError):  # the run ends under us (a task failed): close the writers too
                    await closing.close_within("metrics", "consumer", partial(joining.stop_member, self.consumer),
                                               CLOSE_TIMEOUT_S)  # mid-join: it leaves at once
            self.consumer = None
            await self.stop_restoring()  # one started meanwhile all the same (review M2), before the states go
            await self.ownership.close_all()
            log.info("metrics.stopped")

    def _writer(self, partition: int) -> PartitionWriter:
        """Partition N's writer (not started): the transactional id `...metrics.p<N>` is the same on every worker."""
        s = self.settings
        producer = clients.transactional_producer(
            s, transactional_id=s.changelog_transactional_id(partition),
            client_id=f"metrics-{s.worker_id}-p{partition}", transaction_timeout_ms=s.transaction_timeout_ms,
            linger_ms=5, retry_backoff_ms=RETRY_BACKOFF_MS)
        return PartitionWriter(producer, partition, self.names.changelog, self.names.snapshots,
                               timeout_s=s.transaction_timeout_ms / 1000)

    # -- one batch --------------------------------------------------------------------------------
    async def process(self, batch: Batch) -> None:
        """Apply a batch, then write its changelog records and commit its offsets in the background, in order."""
        assert self._supervisor is not None
        started = time.perf_counter()
        # a woken zombie should not even apply what the new owner now holds (ADR 0012); its writes are fenced anyway
        # (ADR 0016), this stops it sooner
        self._stalls.check()
        changes, offsets = self.ownership.apply(batch, self.clock())
        self._stalls.check()
        if not offsets:  # nothing of it is ours now (fetched before a rebalance): nothing to write, nothing to commit
            return  # (aiokafka refuses to commit no offsets: ValueError, which would end the process; review M1)
        await self.settle()  # the previous batch's commit first: offsets are committed in order
        self._settling = self._supervisor.spawn("commit", self._commit_after(changes, offsets, started))

    async def _commit_after(self, changes: Changes, offsets: dict[TopicPartition, int], started: float) -> None:
        """Commit the batch's offsets once its changelog transactions are committed (a failure ends the run, and so
        does a commit not done within `commit_timeout_ms`: the changelog already holds the batch's states, the next
        run restores them and redoes the batch, which changes nothing)."""
        assert self.consumer is not None and self._supervisor is not None
        await self.ownership.write(changes)
        timeout_s = self.settings.commit_timeout_ms / 1000
        self._commit_since = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                await self.consumer.commit(offsets)
        except TimeoutError:
            raise CommitStuck(f"offsets not committed within {timeout_s:g} s") from None
        finally:
            self._commit_since = None
        self._supervisor.health.committed()
        telemetry.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def settle(self, within_s: float | None = None) -> None:
        """Wait until the last batch's changelog records are acknowledged and its offsets committed; raise if not.
        Bounded by the batch's own deadlines (the transaction's, the commit's), or `within_s`: then the batch is
        given up (cancelled) and `CommitStuck` raised."""
        pending, self._settling = self._settling, None
        if pending is None:
            return
        # not `await pending`: its cancellation must not cancel the caller
        done, _ = await asyncio.wait({pending}, timeout=within_s)
        if not done:
            pending.cancel()
            raise CommitStuck(f"the last batch not committed within {within_s:g} s")
        if pending.cancelled():
            raise CommitCancelled
        failure = pending.exception()
        if failure is not None:
            raise failure

    async def _probe_loop(self) -> None:
        """Probe Kafka every second for as long as the run lasts, whatever the consume loop is waiting on."""
        while True:
            await self._probe_broker()
            await asyncio.sleep(PROBE_EVERY_S)

    async def _probe_broker(self) -> None:
        """`/readyz` says 503 while the broker does not answer or an offset commit is overdue; their end gives back
        only that."""
        assert self.consumer is not None and self.readiness is not None
        if not await probe.broker_answers(self.consumer, sorted(self.ownership.assigned) or [self._probe_tp],
                                          PROBE_TIMEOUT_S):
            self.readiness.kafka("broker unreachable")
            return
        since = self._commit_since
        self.readiness.kafka("offset commit overdue" if since is not None and time.monotonic() - since > COMMIT_LATE_S
                             else None)

    # -- periodic work ----------------------------------------------------------------------------
    async def publish_snapshots(self) -> int:
        """One snapshot event per commune of the owned partitions, a transaction per partition; returns how many."""
        return await publishing.publish_snapshots(self.ownership, self.lock, datetime.fromtimestamp(self.clock(), UTC))

    async def _snapshot_loop(self, stop: asyncio.Event) -> None:
        """Snapshots every interval (`publishing.snapshot_loop`): a fenced or stuck writer ends the run."""
        await publishing.snapshot_loop(stop, self.settings.snapshot_interval_s, self.publish_snapshots)


def stop_budget_s(settings: MetricsSettings) -> float:
    """The longest SIGTERM can take in a broker outage (infra/compose.yaml's `stop_grace_period` is at least this):
    a batch in `process` waits for the previous one's changelog transactions (`transaction_timeout_ms`) and offset
    commit (`commit_timeout_ms`); `_stop` then waits `LAST_SETTLE_S` for the last batch, stops the consumer, then
    every writer together (`CLOSE_TIMEOUT_S` each); at most the runtime's `stop_deadline_s`."""
    last_batch_s = (settings.transaction_timeout_ms + settings.commit_timeout_ms) / 1000
    return bounded_stop_s(settings, last_batch_s + LAST_SETTLE_S + 2 * CLOSE_TIMEOUT_S)
