"""The metrics worker's shell when Kafka stops answering: a consumer fake at the client boundary, the real worker,
runtime and readiness around it. A commit that never returns must not wedge the worker, hide from `/readyz` or hold
a SIGTERMed process; a broker probe must give back exactly the readiness it took, never more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from services.common import runtime
from services.common.health import Health
from services.common.runtime import Supervisor
from services.metrics import worker as worker_module
from services.metrics.rebalance import Rebalance
from services.metrics.settings import MetricsSettings
from services.metrics.worker import MetricsWorker
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
TP = TopicPartition("commune.events.dossier", 0)


class FakeConsumer:
    """The consumer as the worker uses it: batches the test pushes, a commit and a broker the test can break."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[dict[TopicPartition, list[Any]]] = asyncio.Queue()
        self.broker_up = True
        self.commit_hangs = False
        self.commits_attempted = 0
        self.probes = 0
        self.stop_started = asyncio.Event()
        self.stop_release: asyncio.Event | None = None  # None: a stop returns at once
        self.stop_finished = False
        self.paused: set[TopicPartition] = set()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        try:
            return await asyncio.wait_for(self.batches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits_attempted += 1
        if not offsets:  # aiokafka's commit_structure_validate
            raise ValueError(offsets)
        if self.commit_hangs:  # aiokafka retries a commit for as long as the coordinator does not answer
            await asyncio.Future()

    def assignment(self) -> set[TopicPartition]:
        return set()  # what the lag gauge asks: owning nothing, it asks nothing of the broker (`probes` stay its own)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.probes += 1
        if not self.broker_up:
            raise KafkaConnectionError("broker gone")
        return dict.fromkeys(tps, 0)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return None

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def stop(self) -> None:
        self.stop_started.set()
        if self.stop_release is not None:
            await self.stop_release.wait()
        self.stop_finished = True


class Run:
    """One metrics worker under `runtime.supervise` with a fake consumer; its rebalances driven by the test."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.worker = MetricsWorker(MetricsSettings(state_dir=tmp_path / "state", **settings))
        self.consumer = FakeConsumer()
        self.health, self.stop = Health("metrics"), asyncio.Event()
        self.listener: Rebalance | None = None
        w = self.worker

        async def start(supervisor: Supervisor) -> None:  # no Kafka: the fake, and a listener the test calls
            w.consumer = self.consumer  # type: ignore[assignment]
            self.listener = Rebalance(w, supervisor)

        async def assign(partitions: set[TopicPartition]) -> None:  # no restore: nothing to read
            w.ownership.assigned, w.ownership.owned = set(partitions), {tp.partition for tp in partitions}

        async def write(changes: dict[int, dict[bytes, bytes]]) -> None:  # the changelog transaction commits
            pass

        w._start = start  # type: ignore[method-assign]
        w.ownership.assign = assign  # type: ignore[method-assign]
        w.ownership.apply = lambda batch, now: ({}, {tp: 1 for tp in batch})  # type: ignore[method-assign]
        w.ownership.write = write  # type: ignore[method-assign]
        self.task = asyncio.create_task(runtime.supervise("metrics", w.run, self.stop, self.health))

    async def assigned(self) -> None:
        """The callback, then the restore it leaves to a task (the partition paused until it is done)."""
        listener = await eventually_async(lambda: self.listener, what="the run started")
        await listener.assigned({TP})
        restoring = self.worker.restoring
        assert restoring is not None and self.consumer.paused == {TP}
        await asyncio.wait({restoring})
        assert self.consumer.paused == set()

    async def revoked(self) -> None:
        assert self.listener is not None
        await self.listener.revoked({TP})

    async def probed(self, times: int = 2) -> None:
        """Wait until the broker was probed `times` more times (the probe's verdict is reported after each)."""
        seen = self.consumer.probes
        await eventually_async(lambda: self.consumer.probes >= seen + times, what=f"{times} more probes")
        await asyncio.sleep(0)  # the last probe's verdict reported

    async def batch_with_hanging_commit(self) -> None:
        self.consumer.commit_hangs = True
        await self.consumer.batches.put({TP: ["record"]})
        await eventually_async(lambda: self.consumer.commits_attempted >= 1, what="the commit attempted")

    async def finish(self) -> None:
        self.stop.set()
        if self.consumer.stop_release is not None:
            self.consumer.stop_release.set()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    made = Run(tmp_path, commit_timeout_ms=60_000)
    try:
        yield made
    finally:
        await made.finish()


def ready(run: Run) -> tuple[bool, str]:
    return run.health.ready, run.health.detail


async def test_a_probe_blip_during_a_rebalance_does_not_report_ready(run: Run) -> None:
    """Partitions revoked, then the broker unreachable and back before the next assignment: still not ready."""
    await run.assigned()
    assert ready(run) == (True, "1 partitions assigned and restored")
    await run.revoked()
    run.consumer.broker_up = False
    await run.probed()
    assert ready(run) == (False, "broker unreachable")
    run.consumer.broker_up = True
    await run.probed()
    assert ready(run) == (False, "rebalancing")
    await run.assigned()
    assert ready(run) == (True, "1 partitions assigned and restored")


async def test_a_rebalance_during_an_outage_is_not_ready_until_both_are_over(run: Run) -> None:
    """Assigned while the broker is unreachable: not ready until the probe answers again, then ready."""
    await run.assigned()
    await run.revoked()
    run.consumer.broker_up = False
    await run.probed()
    await run.assigned()
    assert ready(run) == (False, "broker unreachable")
    run.consumer.broker_up = True
    await run.probed()
    assert ready(run) == (True, "1 partitions assigned and restored")


async def test_a_hanging_commit_makes_the_worker_not_ready(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker's metadata answers but the offset commit never returns: /readyz says so before the deadline."""
    monkeypatch.setattr(worker_module, "COMMIT_LATE_S", 0.3, raising=False)
    await run.assigned()
    await run.batch_with_hanging_commit()
    await eventually_async(lambda: ready(run) == (False, "offset commit overdue"), timeout=5,
                           what="/readyz false while the commit hangs")


async def test_a_commit_past_its_deadline_ends_the_run_with_a_kafka_error(tmp_path: Path) -> None:
    """A commit not done within `commit_timeout_ms` ends the run with a KafkaError: the runtime restarts it."""
    run = Run(tmp_path, commit_timeout_ms=1_000)
    try:
        await run.assigned()
        await run.batch_with_hanging_commit()
        await eventually_async(lambda: run.health.detail == "restarting after CommitStuck", timeout=10,
                               what="the run restarting after the commit's deadline")
        assert issubclass(worker_module.CommitStuck, KafkaError)  # type: ignore[attr-defined]
    finally:
        await run.finish()


async def test_a_revocation_waits_for_a_hanging_commit_no_longer_than_its_deadline(tmp_path: Path) -> None:
    """The revoke callback's wait for the batch in flight ends with the commit's deadline, raising its failure."""
    run = Run(tmp_path, commit_timeout_ms=1_000)
    try:
        await run.assigned()
        await run.batch_with_hanging_commit()
        with pytest.raises(KafkaError):
            await asyncio.wait_for(run.revoked(), 10)
    finally:
        await run.finish()


async def test_sigterm_ends_the_run_while_a_commit_hangs(run: Run) -> None:
    """stop set while the batch's commit never returns: the run ends within the bounded wait for the last commit."""
    await run.assigned()
    await run.batch_with_hanging_commit()
    began = time.monotonic()
    run.stop.set()
    await asyncio.wait_for(asyncio.shield(run.task), 15)
    assert time.monotonic() - began < 15
    assert ready(run) == (False, "stopping")


async def test_the_consumer_stop_has_a_deadline_and_is_not_cut_short(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer stop that hangs holds the run no longer than its deadline, and goes on to its end (not cancelled
    half-way, which leaves aiokafka's coordinator half-closed)."""
    monkeypatch.setattr(worker_module, "CLOSE_TIMEOUT_S", 0.5, raising=False)
    run = Run(tmp_path, commit_timeout_ms=60_000)
    run.consumer.stop_release = asyncio.Event()
    release = run.consumer.stop_release
    try:
        await run.assigned()
        run.stop.set()
        await asyncio.wait_for(asyncio.shield(run.task), 5)
        assert run.consumer.stop_started.is_set() and not run.consumer.stop_finished
        release.set()
        await eventually_async(lambda: run.consumer.stop_finished, what="the consumer's stop finished")
    finally:
        await run.finish()


async def test_a_batch_of_partitions_not_owned_now_commits_nothing_and_the_run_goes_on(run: Run) -> None:
    """Every record of a batch is of a partition not owned (fetched before a rebalance): no commit is tried (aiokafka
    refuses an empty one with ValueError, which ended the process; review M1), the run goes on and commits the
    next batch."""
    await run.assigned()
    run.worker.ownership.apply = lambda batch, now: ({}, {})  # type: ignore[method-assign]
    await run.consumer.batches.put({TP: ["record"]})
    await eventually_async(lambda: run.consumer.batches.empty(), what="the batch taken")
    run.worker.ownership.apply = lambda batch, now: ({}, {tp: 1 for tp in batch})  # type: ignore[method-assign]
    await run.consumer.batches.put({TP: ["record"]})
    await eventually_async(lambda: run.consumer.commits_attempted >= 1, what="the next batch committed")
    await asyncio.sleep(0.1)
    assert run.consumer.commits_attempted == 1 and not run.task.done()


async def test_an_assignment_while_the_run_stops_starts_no_restore(run: Run) -> None:
    """aiokafka's stop completes a join already under way, which assigns partitions: the run is ending, so no
    restore starts (review M2: one ran beside the stop's removal of every state, and left a deleted store behind
    for the next run)."""
    listener = await eventually_async(lambda: run.listener, what="the run started")
    run.worker.stopping = True
    await listener.assigned({TP})
    assert run.worker.restoring is None and run.worker.ownership.owned == set()


async def test_an_assignment_after_the_stop_gave_the_consumer_up_restores_nothing(run: Run) -> None:
    """The stop gave the consumer's close up (`close_within`'s 10 s) and dropped it; the close, going on in the
    background, completes a join and aiokafka calls the listener: it returns, nothing restored. It asserted the
    consumer was there: the error went to the run's task group, not a Kafka error, and a clean SIGTERM ended in
    `service.crashed` (audit)."""
    await run.assigned()
    assert run.listener is not None
    before = run.worker.restoring
    run.worker.stopping, run.worker.consumer = True, None
    await run.listener.assigned({TP})
    assert run.worker.restoring is before
