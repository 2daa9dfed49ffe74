"""The service runtime: logging, signals, the HTTP server, supervised tasks, restart with back-off, and the expiry
of the TLS certificates the service loads (`services.common.certificates`).

Structured concurrency: a worker runs as the `main` task of a `TaskGroup`, and
every background task it needs is spawned into the same group through its
`Supervisor`. A task that fails is logged (type and place; the message only for
the project's own errors marked `SafeMessage`: any other may quote a record) and
counted, and ends the whole run: the group cancels the other tasks. A run that
ended with a Kafka error is started afresh after a back-off (state is restored
from Kafka); any other error ends the process with exit code 1, so its consumer
group rebalances its partitions to the other workers.
So does a permanent Kafka error (`PERMANENT`: the principal lacks a right, its
credentials or the client's configuration are wrong): no restart can mend it, and
a process that restarts for ever with `/healthz` 200 hides it from everyone.
A send refused for one of them is raised as it is, not wrapped (`transactions.all_sent`).
Restarts that get nowhere are not hidden either: after `UNHEALTHY_AFTER_RUNS` runs
in a row failed, none with a commit nor lasting `PROGRESS_RUN_S` (readiness alone is
no progress: it comes after every restore, even when every commit is then refused),
after at least about 90 s of back-off, `/healthz` says 503, so the orchestrator
restarts the process and the operator sees a crash loop; runs go on meanwhile and a
commit, or a run that stays up, makes it 200 again (`services.common.streak`, the rule
of every retrying loop). A run that failed while the brokers did not answer at all is
an outage, not a crash loop: it is not counted (`/readyz` says so; restarting every
worker of the country would only delay the recovery).
SIGTERM, SIGINT and SIGHUP set `stop` and turn `/readyz` to 503 at once; the worker finishes what it holds and
returns. It has `stop_deadline_s` for that: a stop that waits on a broker gone (commits, transactions, client stops)
would otherwise outlast the orchestrator's grace period and be killed there, unlogged. Past the deadline, or at a
second signal, the process logs `service.stop_forced` and exits 0 as if killed: everything is built to survive a
SIGKILL (transactions, the ledger, idempotency keys), so what it held is redone by its successor
(`services.common.stopping`).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from functools import partial
from typing import Any, TypeVar

import structlog
import uvloop
from aiohttp import web
from aiokafka.errors import KafkaError

from services.common import certificates, http, probe, store_faults, telemetry
from services.common.health import Health
from services.common.logging import configure, error_fields
from services.common.permanent import PERMANENT
from services.common.settings import ServiceSettings
from services.common.stopping import Stopping
from services.common.streak import Streak

log = structlog.get_logger("runtime")
T = TypeVar("T")
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 15.0


class Supervisor:
    """Owns one run's tasks. Everything a worker starts in the background is spawned here, never left loose."""

    def __init__(self, service: str, group: asyncio.TaskGroup, stop: asyncio.Event, health: Health) -> None:
        self.service, self.stop, self.health = service, stop, health
        self._group = group
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` as a supervised task: if it fails, the failure is logged and counted and ends the run."""
        watched = self._watch(name, coro)
        try:
            task = self._group.create_task(watched, name=f"{self.service}:{name}")
        except RuntimeError:  # the group is shutting down: nothing will ever await these
            watched.close()
            coro.close()
            raise
        self._tasks.add(task)  # until it ends: a worker may spawn one task per batch for as long as it runs
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(partial(_close_unstarted, coro))
        return task

    def spawn_if_running(self, name: str, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
        """`spawn`, or None once the run's task group is ending (a task failed, or a consumer's stop completed a join
        and its listener was given partitions): `coro` is closed, nothing starts, and nothing failed."""
        try:
            return self.spawn(name, coro)
        except RuntimeError:
            return None

    async def _watch(self, name: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():  # cancelled by its owner (the run is ending): as it should
                raise
            # a CancelledError from inside (a client's future cancelled under it): the task gave up, nobody asked it to
            log.error("task.failed", service=self.service, task=name, error="CancelledError", where="inside the task")
            telemetry.TASK_FAILURES.labels(self.service, name).inc()
            raise WorkerCancelled(f"{name} was cancelled from inside") from None
        except Exception as exc:
            log.error("task.failed", service=self.service, task=name, **error_fields(exc))
            telemetry.TASK_FAILURES.labels(self.service, name).inc()
            raise

    def fail(self, exc: BaseException) -> None:
        """Report a failure seen in a callback (a rebalance listener, a delivery callback): it ends the run. The first
        one ends it; any after it (the run is ending already) is logged and counted, not dropped."""
        if self._failed:
            log.error("task.failed", service=self.service, task="callback", **error_fields(exc),
                      after="an earlier failure")
            telemetry.TASK_FAILURES.labels(self.service, "callback").inc()
            return
        self._failed = True

        async def reraise() -> None:
            raise exc

        if self.spawn_if_running("callback", reraise()) is None:  # the run is already ending
            log.error("task.failed_late", service=self.service, error=type(exc).__name__)
            telemetry.TASK_FAILURES.labels(self.service, "callback").inc()

    def cancel_background(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _close_unstarted(coro: Coroutine[Any, Any, Any], task: asyncio.Task[Any]) -> None:
    """A task cancelled before its first step (a stop landing right after the spawn) never started `coro`: closed
    here, it is not reported on stderr as "coroutine ... was never awaited" (a RuntimeWarning at every such stop, term
    audit). Closing a coroutine that ran to its end does nothing."""
    if task.cancelled():
        coro.close()


class WorkerCancelled(Exception):
    """A supervised task ended cancelled though nobody cancelled it; the run restarts like after a Kafka error.

    (aiokafka cancels its own futures when a broker goes away mid-request; without this the main task would
    end "cancelled", the run would look finished, and the process would exit 0 while it should go on.)
    """


Worker = Callable[[Supervisor], Awaitable[None]]
"""A service's work for one run: returns when `supervisor.stop` is set, raises to end the run."""


async def run_once(service: str, worker: Worker, stop: asyncio.Event, health: Health) -> None:
    """One run of `worker` with its supervised tasks; background tasks end when the worker returns."""
    async with asyncio.TaskGroup() as group:
        supervisor = Supervisor(service, group, stop, health)

        async def main() -> None:
            await worker(supervisor)

        main_task = supervisor.spawn("main", main())
        await asyncio.wait({main_task})
        supervisor.cancel_background()


async def supervise(service: str, worker: Worker, stop: asyncio.Event, health: Health,
                    restart_on: tuple[type[Exception], ...] = (KafkaError,)) -> None:
    """Run `worker` until `stop`; restart it with exponential back-off after an error of `restart_on` that is not
    `PERMANENT` (that one is raised: the process ends). See the module docstring for `/healthz` in a crash loop."""
    if restart_on:
        restart_on = (*restart_on, WorkerCancelled)
    delay = FIRST_BACKOFF_S
    streak = Streak(health)
    while not stop.is_set():
        error: Exception | None = None
        streak.started()
        try:
            await run_once(service, worker, stop, health)
            return
        except* restart_on as group:
            if group.subgroup(lambda exc: isinstance(exc, PERMANENT)) is not None:
                raise
            error = group.exceptions[0]
            while isinstance(error, ExceptionGroup):
                error = error.exceptions[0]
        finally:
            streak.ended()
        assert error is not None
        name = type(error).__name__
        if stop.is_set():  # the stop's own last commit or close met the error: no restart follows, none is counted
            log.warning("service.stopped_with_error", service=service, **error_fields(error))
            return
        log.error("service.restarting", service=service, **error_fields(error), retry_in_s=delay)
        health.set_ready(False, f"restarting after {name}")
        # a run ended while no broker answered is the outage's (`/readyz`, ServiceNotReady), not a crash loop's: a
        # broker restart of seconds ends ~5 runs of intake, which counted as restarts fired ServiceRestarting for
        # 10 minutes after the broker was back (runbooks audit, 2026-12-06)
        outage = await streak.failed_unless_outage(name, stop)
        if stop.is_set():  # stopped while the brokers were asked: no restart follows, none is counted
            return
        (telemetry.OUTAGE_RESTARTS if outage else telemetry.RESTARTS).labels(service, name).inc()
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, MAX_BACKOFF_S)


async def serve(service: str, settings: ServiceSettings, worker: Worker, *, health: Health | None = None,
                extra: http.Extra | None = None, restart_on: tuple[type[Exception], ...] = (KafkaError,),
                stop: asyncio.Event | None = None, stop_at_eof: int | None = None,
                on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
    """A whole service: stop signals, its HTTP server (when `http_port` is set), and `worker` under supervision.
    With `stop_at_eof`, a file descriptor (a pipe from a parent process) whose end asks for a stop as a first signal
    would, and is no second signal after one: a parent asking its child to stop while a signal to the process group
    reached the child too forced the child's stop (notify's deadline tracker: `service.stop_forced`, 4 stops of 7;
    ops audit). `on_stop`: the stop's last step once the worker has ended, while the stop signals are still handled
    (notify waits for its tracker there: a stop between runs, in a broker outage, never reached the worker's own last
    step, and a second signal during that wait was Python's, a traceback; review)."""
    health = health or Health(service)
    health.broker_answers = partial(probe.bootstrap_answers, settings, service)
    stop = stop or asyncio.Event()
    stopping = Stopping(service, stop, health, settings.stop_deadline_s)
    stopping.install(stop_at_eof)
    runner: web.AppRunner | None = None
    try:
        if settings.http_port:
            runner = await http.serve(health, settings.http_host, settings.http_port, extra)
        await supervise(service, watching_certificates(service, settings, worker), stop, health, restart_on)
        if on_stop is not None and stop.is_set():
            await on_stop()
    finally:
        health.set_ready(False, "stopped")
        if runner is not None:
            await runner.cleanup()
        stopping.release()


def watching_certificates(service: str, settings: ServiceSettings, worker: Worker) -> Worker:
    """`worker` with the expiry of the certificate files its settings load watched beside it, a supervised task of
    every run (`services.common.certificates`): read again at each run's start, so a restart sees a rotated file."""
    files = settings.certificate_files()
    if not files:
        return worker

    async def watched(supervisor: Supervisor) -> None:
        supervisor.spawn("certificates", certificates.watch(service, files))
        await worker(supervisor)

    return watched


def bounded_stop_s(settings: ServiceSettings, own_s: float) -> float:
    """The longest a stop signal can keep the process: what its worker's own stop may take (`own_s`, its clients'
    time limits in a broker outage), at most `stop_deadline_s`."""
    return min(own_s, settings.stop_deadline_s)


def main(service: str, settings: ServiceSettings, worker: Worker, **options: Any) -> None:
    """The entry point of `python -m services.<service>`: logging, uvloop, `serve`; exit 1 on a crash."""
    configure(settings.log_level)
    freeze_imports()
    try:
        uvloop.run(serve(service, settings, worker, **options))
    except BaseExceptionGroup as group:
        _crashed(service, group)
    except Exception as exc:
        _crashed(service, exc)


def freeze_imports() -> None:
    """Move every object alive now (modules, classes, pydantic's validators: most of the heap) out of the cyclic
    GC's reach: a full collection then walks only what the run creates. In intake about 80,000 objects, whose full
    collection took 26-34 ms at 2,000 events/s: a pause in the p99 latency (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


def _crashed(service: str, exc: BaseException) -> None:
    inner = exc
    while isinstance(inner, BaseExceptionGroup):
        inner = inner.exceptions[0]
    log.critical("service.crashed", service=service, **error_fields(inner))
    if (folder := store_faults.mark_damaged(inner)) is not None:
        log.error("service.store_damaged", service=service, folder=str(folder),
                  effect="marked: a store kept across restarts starts over from Kafka at the next start")
    log.debug("service.crash_traceback", exc_info=inner)
    sys.exit(1)
