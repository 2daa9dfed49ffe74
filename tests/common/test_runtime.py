"""The supervisor and restart loop of services/common/runtime.py, with tiny workers and no broker."""

from __future__ import annotations

import asyncio
import gc
import itertools
import signal
import time
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import suppress
from typing import Any

import pytest
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    NodeNotReadyError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.common import rebalance, runtime, streak
from services.common.health import Health
from services.common.rebalance import RebalanceListener
from services.common.runtime import Supervisor, run_once, serve, supervise
from services.common.settings import ServiceSettings
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit


class Boom(Exception):
    """An error that is not a Kafka error: it ends the process."""


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The runtime's log events of this test (fresh loggers: a configured one may be cached)."""
    with capture_logs() as captured:
        monkeypatch.setattr(runtime, "log", structlog.get_logger("runtime"))
        monkeypatch.setattr(rebalance, "log", structlog.get_logger("rebalance"))
        yield captured


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "FIRST_BACKOFF_S", 0.05)
    monkeypatch.setattr(runtime, "MAX_BACKOFF_S", 0.2)


async def test_failing_background_task_is_logged_counted_and_ends_the_run(
        service: str, logs: list[MutableMapping[str, Any]]) -> None:
    """A spawned task that raises is logged (type, place, no message) and counted, and the worker is cancelled."""
    cancelled = asyncio.Event()

    async def background() -> None:
        raise Boom("personal data that must not reach the log")

    async def worker(supervisor: Supervisor) -> None:
        supervisor.spawn("flusher", background())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(run_once(service, worker, asyncio.Event(), Health(service)), timeout=5)
    assert raised.value.subgroup(Boom) is not None
    assert cancelled.is_set()
    assert sample("commune_task_failures_total", service=service, task="flusher") == 1
    failed = [e for e in logs if e["event"] == "task.failed" and e.get("task") == "flusher"]
    assert len(failed) == 1
    assert failed[0]["error"] == "Boom" and "test_runtime.py:" in failed[0]["where"]
    assert "personal data" not in repr(logs)


async def test_kafka_error_restarts_the_run_with_growing_backoff(service: str, fast_backoff: None) -> None:
    """A KafkaError ends the run and starts a new one after 0.05, 0.1, 0.2 s, counted per error type."""
    starts: list[float] = []
    stop = asyncio.Event()
    health = Health(service)

    async def worker(supervisor: Supervisor) -> None:
        starts.append(time.monotonic())
        if len(starts) <= 3:
            raise KafkaConnectionError("broker gone")
        assert not supervisor.health.ready and supervisor.health.detail == "restarting after KafkaConnectionError"
        stop.set()

    await asyncio.wait_for(supervise(service, worker, stop, health), timeout=10)
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    slack = 0.005  # the event loop may run a timer up to its clock resolution early
    assert all(gap >= wait - slack for gap, wait in zip(gaps, (0.05, 0.1, 0.2), strict=True)), gaps
    assert sample("commune_service_restarts_total", service=service, error="KafkaConnectionError") == 3


async def test_backoff_is_capped(service: str, fast_backoff: None) -> None:
    """After many Kafka errors in a row the wait stays at MAX_BACKOFF_S instead of doubling on."""
    starts: list[float] = []
    stop = asyncio.Event()

    async def worker(_: Supervisor) -> None:
        starts.append(time.monotonic())
        if len(starts) <= 6:
            raise NodeNotReadyError()
        stop.set()

    await asyncio.wait_for(supervise(service, worker, stop, Health(service)), timeout=10)
    last_gap = starts[-1] - starts[-2]
    assert 0.2 - 0.005 <= last_gap < 0.35, last_gap
    assert sample("commune_service_restarts_total", service=service, error="NodeNotReadyError") == 6


async def test_other_error_ends_supervise_by_raising(service: str, fast_backoff: None) -> None:
    """An error that is not a Kafka error is not retried: `supervise` raises it after one run."""
    runs = 0

    async def worker(_: Supervisor) -> None:
        nonlocal runs
        runs += 1
        raise Boom()

    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(supervise(service, worker, asyncio.Event(), Health(service)), timeout=5)
    assert raised.value.subgroup(Boom) is not None
    assert runs == 1
    assert sample("commune_service_restarts_total", service=service, error="Boom") == 0


async def test_a_stop_while_the_brokers_are_asked_counts_no_restart(service: str, fast_backoff: None) -> None:
    """A run ends on a Kafka error, and the stop comes while the runtime asks whether a broker answers: no restart
    follows, so none is counted, in either counter (it counted one in `commune_service_restarts_total`)."""
    stop, runs = asyncio.Event(), 0

    async def worker(_: Supervisor) -> None:
        nonlocal runs
        runs += 1
        raise KafkaConnectionError("broker gone")

    async def asked_as_the_stop_comes() -> bool:
        stop.set()
        await asyncio.Event().wait()  # the answer never comes before the stop is seen
        return True

    health = Health(service)
    health.broker_answers = asked_as_the_stop_comes
    await asyncio.wait_for(supervise(service, worker, stop, health), timeout=5)
    assert runs == 1
    assert [sample(counter, service=service, error="KafkaConnectionError") for counter in (
        "commune_service_restarts_total", "commune_service_outage_restarts_total")] == [0, 0]


async def test_stop_ends_supervise_without_error(service: str) -> None:
    """A worker that returns once `stop` is set ends `supervise` normally, background tasks cancelled."""
    stop = asyncio.Event()
    background_started, background_cancelled = asyncio.Event(), asyncio.Event()

    async def background() -> None:
        background_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            background_cancelled.set()

    async def worker(supervisor: Supervisor) -> None:
        supervisor.spawn("idle", background())
        await supervisor.stop.wait()

    task = asyncio.create_task(supervise(service, worker, stop, Health(service)))
    await eventually_async(background_started.is_set, timeout=5, what="the background task runs")
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert background_cancelled.is_set()
    assert sample("commune_task_failures_total", service=service, task="idle") == 0


async def test_fail_from_a_callback_ends_the_run(service: str, logs: list[MutableMapping[str, Any]]) -> None:
    """`Supervisor.fail` called from a plain callback ends the run with that error (once, however often called); a
    second report is logged and counted too, not dropped."""
    async def worker(supervisor: Supervisor) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(supervisor.fail, Boom("from a delivery callback"))
        loop.call_soon(supervisor.fail, Boom("a second report"))
        await asyncio.Event().wait()

    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(run_once(service, worker, asyncio.Event(), Health(service)), timeout=5)
    booms = raised.value.subgroup(Boom)
    assert booms is not None and len(booms.exceptions) == 1
    assert sample("commune_task_failures_total", service=service, task="callback") == 2
    assert sorted(str(e.get("after")) for e in logs if e["event"] == "task.failed") == ["None", "an earlier failure"]


async def test_fail_after_the_run_ended_is_logged_not_lost(service: str, logs: list[MutableMapping[str, Any]]) -> None:
    """A callback failing after its run ended is logged as late and counted (no task can take it, none is left
    unawaited; before, it was not counted, and no alert on the count saw it)."""
    supervisors: list[Supervisor] = []

    async def worker(supervisor: Supervisor) -> None:
        supervisors.append(supervisor)

    await asyncio.wait_for(run_once(service, worker, asyncio.Event(), Health(service)), timeout=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        supervisors[0].fail(Boom())
        gc.collect()
    assert [e["error"] for e in logs if e["event"] == "task.failed_late"] == ["Boom"]
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert sample("commune_task_failures_total", service=service, task="callback") == 1


class FailingRestore(RebalanceListener):
    async def assigned(self, partitions: set[TopicPartition]) -> None:
        raise Boom("restore failed")


async def test_rebalance_listener_failure_reaches_the_supervisor(
        service: str, logs: list[MutableMapping[str, Any]]) -> None:
    """A failing `assigned` is reported to `fail` even though aiokafka swallows what the callback raises."""
    async def worker(supervisor: Supervisor) -> None:
        listener = FailingRestore(supervisor.fail)
        with suppress(Boom):  # what aiokafka's coordinator does with a listener's exception: log it, carry on
            await listener.on_partitions_assigned(frozenset({TopicPartition("t", 0)}))
        await asyncio.Event().wait()

    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(run_once(service, worker, asyncio.Event(), Health(service)), timeout=5)
    assert raised.value.subgroup(Boom) is not None
    assert any(e["event"] == "rebalance.assign_failed" and e["error"] == "Boom" for e in logs)


async def test_rebalance_listener_passes_partitions_as_a_set() -> None:
    """Subclasses receive a mutable set copy of the frozenset aiokafka passes, and a revoke failure is reported."""
    seen: list[set[TopicPartition]] = []
    failures: list[BaseException] = []

    class Recording(RebalanceListener):
        async def assigned(self, partitions: set[TopicPartition]) -> None:
            seen.append(partitions)

        async def revoked(self, partitions: set[TopicPartition]) -> None:
            raise Boom()

    listener = Recording(failures.append)
    tps = frozenset({TopicPartition("t", 0), TopicPartition("t", 1)})
    await listener.on_partitions_assigned(tps)
    assert seen == [set(tps)] and type(seen[0]) is set
    with pytest.raises(Boom):
        await listener.on_partitions_revoked(tps)
    assert [type(f) for f in failures] == [Boom]


async def test_serve_reports_stopped_and_releases_the_signals(service: str) -> None:
    """`serve` runs the worker under supervision; afterwards /readyz's state says stopped and SIGTERM is free again."""
    stop = asyncio.Event()
    health = Health(service)

    async def worker(supervisor: Supervisor) -> None:
        supervisor.health.set_ready(True, "consuming")
        await supervisor.stop.wait()

    task = asyncio.create_task(serve(service, ServiceSettings(http_port=0), worker, health=health, stop=stop))
    await eventually_async(lambda: health.ready, timeout=5, what="the worker says it is ready")
    assert sample("commune_service_ready", service=service) == 1
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert (health.ready, health.detail) == (False, "stopped")
    assert sample("commune_service_ready", service=service) == 0
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


async def test_a_worker_cancelled_from_inside_restarts_instead_of_ending_quietly(
        service: str, fast_backoff: None) -> None:
    """A CancelledError nobody asked for (a client's future cancelled in a broker outage) restarts the run, counted;
    before, the run looked finished and the process exited 0 while it should have gone on."""
    runs: list[int] = []
    stop = asyncio.Event()

    async def worker(supervisor: Supervisor) -> None:
        runs.append(1)
        if len(runs) == 1:
            doomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            doomed.cancel()
            await doomed  # raises CancelledError inside the task, which nobody cancelled
        stop.set()

    await asyncio.wait_for(supervise(service, worker, stop, Health(service)), timeout=5)
    assert len(runs) == 2
    assert sample("commune_task_failures_total", service=service, task="main") == 1
    assert sample("commune_service_restarts_total", service=service, error="WorkerCancelled") == 1


async def test_a_worker_cancelled_by_stop_ends_without_a_restart(service: str) -> None:
    """Cancelling the run from outside (the owner ends it) is no failure: nothing counted, no restart."""
    stop = asyncio.Event()
    started = asyncio.Event()

    async def worker(supervisor: Supervisor) -> None:
        started.set()
        await asyncio.Event().wait()

    run = asyncio.create_task(supervise(service, worker, stop, Health(service)))
    await started.wait()
    stop.set()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sample("commune_task_failures_total", service=service, task="main") == 0


@pytest.mark.parametrize("permanent", [TopicAuthorizationFailedError, GroupAuthorizationFailedError,
                                       TransactionalIdAuthorizationFailed, SaslAuthenticationFailed])
async def test_a_permanent_kafka_error_ends_supervise_instead_of_restarting(
        service: str, fast_backoff: None, permanent: type[Exception]) -> None:
    """A principal without a right (or with wrong credentials) is refused by every run alike: `supervise` raises
    after the first run, so the process ends with exit 1 rather than restarting for ever with /healthz 200."""
    runs = 0

    async def worker(_: Supervisor) -> None:
        nonlocal runs
        runs += 1
        raise permanent()

    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(supervise(service, worker, asyncio.Event(), Health(service)), timeout=5)
    assert raised.value.subgroup(permanent) is not None and runs == 1


def test_a_permanent_kafka_error_exits_1_logged_as_crashed(service: str, logs: list[MutableMapping[str, Any]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`runtime.main` logs `service.crashed` (type and place, not the message) and exits with code 1."""
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    monkeypatch.setattr(runtime, "freeze_imports", lambda: None)

    async def worker(_: Supervisor) -> None:
        raise TopicAuthorizationFailedError("topic of an applicant's commune")

    with pytest.raises(SystemExit) as exited:
        runtime.main(service, ServiceSettings(http_port=0), worker)
    assert exited.value.code == 1
    crashed = [e for e in logs if e["event"] == "service.crashed"]
    assert crashed and crashed[0]["error"] == "TopicAuthorizationFailedError"
    assert "applicant" not in repr(crashed)  # type and place only (the traceback goes to debug)


@pytest.mark.parametrize(("refused", "named"), [
    ("commune.events.dossier", "commune.events.dossier"),  # a produce answer: aiokafka's `error(topic)`
    ({"commune.events.dossier", "commune.dlq.dossier"}, "commune.dlq.dossier,commune.events.dossier"),  # AddPartitions
])
def test_a_refused_write_crashes_naming_its_topics(service: str, logs: list[MutableMapping[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch, refused: object,
                                                   named: str) -> None:
    """The crash line of a write the broker refused (intake's WRITE ACL removed on a canonical topic) names the
    topics as well as the error's type and place: the operator mends that ACL. They were left out with the message."""
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    monkeypatch.setattr(runtime, "freeze_imports", lambda: None)

    async def worker(_: Supervisor) -> None:
        raise TopicAuthorizationFailedError(refused)

    with pytest.raises(SystemExit):
        runtime.main(service, ServiceSettings(http_port=0), worker)
    crashed = [e for e in logs if e["event"] == "service.crashed"]
    assert [(e["error"], e["topics"]) for e in crashed] == [("TopicAuthorizationFailedError", named)]


async def test_restarts_without_progress_turn_healthz_unhealthy_until_a_run_gets_somewhere(
        service: str, fast_backoff: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs that keep failing without a commit (a refused login looks like a broker gone; readiness alone is no
    progress: it comes after every restore, even when every commit is then refused) go on being restarted, but after
    UNHEALTHY_AFTER_RUNS of them /healthz says unhealthy; a run that stays up PROGRESS_RUN_S makes it healthy again.
    A commit between failures ends the streak."""
    monkeypatch.setattr(streak, "UNHEALTHY_AFTER_RUNS", 4)
    monkeypatch.setattr(streak, "PROGRESS_RUN_S", 0.3)
    health, stop, runs = Health(service), asyncio.Event(), 0
    alive_seen: list[bool] = []

    async def worker(supervisor: Supervisor) -> None:
        nonlocal runs
        runs += 1
        alive_seen.append(supervisor.health.alive)
        if runs == 2:
            supervisor.health.committed()  # progress: the streak starts again
        supervisor.health.set_ready(True, "assigned")  # ready, then refused at once: no progress
        if runs <= 6:
            raise KafkaConnectionError("Unable to bootstrap")
        assert not supervisor.health.alive
        await eventually_async(lambda: supervisor.health.alive, timeout=5, interval=0.05, what="alive again")
        stop.set()

    await asyncio.wait_for(supervise(service, worker, stop, health), timeout=10)
    # runs 3, 4, 5, 6 failed without progress: unhealthy from the 7th run's start, healthy once it stayed up
    assert alive_seen == [True] * 6 + [False]
    assert health.alive


async def test_a_run_failing_while_it_stops_is_no_restart(service: str, logs: list[MutableMapping[str, Any]]) -> None:
    """A Kafka error raised by the stop itself (its last commit in an outage) ends supervise: logged as a stop with an
    error, no restart logged or counted (before: `service.restarting`, counted, for a run that never came)."""
    stop = asyncio.Event()

    async def worker(supervisor: Supervisor) -> None:
        stop.set()
        raise KafkaConnectionError("the last commit met the outage")

    await asyncio.wait_for(supervise(service, worker, stop, Health(service)), timeout=5)
    assert [e["event"] for e in logs if e["event"].startswith("service.")] == ["service.stopped_with_error"]
    assert sample("commune_service_restarts_total", service=service, error="KafkaConnectionError") == 0


async def test_a_task_cancelled_before_its_first_step_leaves_no_never_awaited_warning(service: str) -> None:
    """A supervised task cancelled as soon as it is spawned (the stop lands right after) closes its coroutine: Python
    printed "coroutine ... was never awaited" on stderr at such stops."""
    async def work() -> None:
        await asyncio.sleep(1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with asyncio.TaskGroup() as group:
            task = Supervisor(service, group, asyncio.Event(), Health(service)).spawn("probe", work())
            task.cancel()
        cancelled = task.cancelled()
        del task  # the last reference to the coroutine: it is finalised now, within `caught`
        gc.collect()
    assert cancelled
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_a_spawn_once_the_run_ended_starts_nothing_and_fails_nothing(service: str) -> None:
    """`spawn_if_running` once the run's task group ended (a rebalance listener given partitions by the consumer's
    stop): None, its coroutine closed, no failure counted; `spawn` raises there."""
    supervisors: list[Supervisor] = []
    started: list[str] = []

    async def worker(supervisor: Supervisor) -> None:
        supervisors.append(supervisor)

    async def work(name: str) -> None:
        started.append(name)

    await asyncio.wait_for(run_once(service, worker, asyncio.Event(), Health(service)), timeout=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert supervisors[0].spawn_if_running("assign", work("late")) is None
        with pytest.raises(RuntimeError):
            supervisors[0].spawn("assign", work("raised"))
        gc.collect()
    assert not started and not [w for w in caught if "never awaited" in str(w.message)]
    assert sample("commune_task_failures_total", service=service, task="assign") == 0
