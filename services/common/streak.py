"""Retrying that gets nowhere shows on `/healthz`: the one rule of every loop that starts its work again on failure.

The runtime restarts a service's runs (`runtime.supervise`); the gateway also retries its claims reader and its
producer within a run, so that its HTTP server goes on answering. Each such loop keeps a `Streak`: failed runs in
a row, none with progress (a commit reported to `Health`, or a run that stayed up `PROGRESS_RUN_S`: readiness
alone is no progress, it comes after every restore, even when every commit is then refused). After
`UNHEALTHY_AFTER_RUNS` of them (the runs' back-off, 0.5 s doubling to 15 s, makes that about 90 s) `/healthz`
says 503 with a short reason (the loop, the count, the last error's type: never a message, which may quote a
record), so the orchestrator restarts the process and the crash loop shows; the loop goes on meanwhile and its
progress, or any commit, makes it 200 again.

A failure while the brokers do not answer at all (`failed_unless_outage`: `Health.broker_answers`, a metadata
request or at least a reply of any kind from a bootstrap address, `probe.replies`) is an outage, not a crash
loop: it neither counts nor ends the streak. `/readyz` says so (`broker unreachable`, alert `ServiceNotReady`);
a liveness restart would mend nothing, and every restart of every worker would delay the recovery by the
orchestrator's own back-off (up to 5 min in Kubernetes) and a full restore. A broker that answers but refuses
this client (credentials, TLS, rights) does count: that loop is going nowhere.
"""

from __future__ import annotations

import asyncio

import structlog

from services.common.health import Health

log = structlog.get_logger("runtime")
UNHEALTHY_AFTER_RUNS = 10
"""Failed runs in a row, none with progress, after which `/healthz` says 503 (back-off 0.5 s doubling to 15 s:
about 90 s of restarts at the least)."""
UNHEALTHY_AFTER_S = 75.0
"""What the runs' back-off takes before the `UNHEALTHY_AFTER_RUNS`th failure (0.5 + 1 + ... + 15 s): how long a loop
that retries without back-off must have failed as well (`Streak.at_least_s`)."""
PROGRESS_RUN_S = 60.0
"""A run that stays up this long got somewhere even without a commit (an idle service commits nothing): it ends a
streak of failed runs, and `/healthz` is 200 again. A run that got ready and failed sooner did not (readiness comes
after every restore, even when every commit is then refused)."""


class Streak:
    """The failed runs in a row of one retrying loop (`loop`: "runs" for the runtime's, else the task's name).

    `at_least_s`: for a loop that retries without back-off (the gateway's broker watch tries every second), the
    streak must also have lasted this long, as the runs' back-off makes it last."""

    def __init__(self, health: Health, loop: str = "runs", at_least_s: float = 0.0) -> None:
        self.health, self.loop, self.at_least_s = health, loop, at_least_s
        self.fruitless = 0
        self._first_failed: float | None = None
        self._progress = health.progress
        self._started: float | None = None
        self._lasting: asyncio.TimerHandle | None = None

    def started(self) -> None:
        """A run begins: if it stays up `PROGRESS_RUN_S` it got somewhere (call `ended` or `failed` when it ends)."""
        loop = asyncio.get_running_loop()
        self._progress, self._started = self.health.progress, loop.time()
        self._lasting = loop.call_later(PROGRESS_RUN_S, self.progressed)

    def ended(self) -> None:
        if self._lasting is not None:
            self._lasting.cancel()
            self._lasting = None

    def progressed(self) -> None:
        """The loop got somewhere: the streak ends, and this loop no longer keeps `/healthz` at 503."""
        self.fruitless, self._first_failed = 0, None
        self.health.set_alive(True, "running", self.loop)

    async def failed_unless_outage(self, error: str, stop: asyncio.Event | None = None) -> bool:
        """As `failed`, unless the brokers do not answer (asked now; not asked once `stop` is set): then as `outage`.
        Whether it was an outage."""
        asking = asyncio.ensure_future(self.health.broker_answers())
        waits = {asking} if stop is None else {asking, asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if asking.done() and not asking.cancelled() and asking.exception() is None and not asking.result():
            self.outage(error)
            return True
        self.failed(error)
        return False

    def outage(self, error: str) -> None:
        """The run (or the try) failed with `error` while the brokers did not answer: neither counted nor progress."""
        self.ended()
        if self.health.progress != self._progress:
            self.fruitless, self._first_failed = 0, None
        self._progress, self._started = self.health.progress, None
        log.info("service.outage", service=self.health.service, loop=self.loop, error=error, runs=self.fruitless)

    def failed(self, error: str) -> None:
        """The run (or the try) failed with `error`, an exception's type name."""
        self.ended()
        now = asyncio.get_running_loop().time()
        lasted = self._started is not None and now - self._started >= PROGRESS_RUN_S
        if self.health.progress != self._progress or lasted:
            self.fruitless, self._first_failed = 0, None
        else:
            self.fruitless += 1
            self._first_failed = now if self._first_failed is None else self._first_failed
        self._progress, self._started = self.health.progress, None
        if (self.fruitless >= UNHEALTHY_AFTER_RUNS and self._first_failed is not None
                and now - self._first_failed >= self.at_least_s and self.health.unwell(self.loop) is None):
            log.error("service.crash_loop", service=self.health.service, loop=self.loop, runs=self.fruitless,
                      error=error)
            what = f"{self.fruitless} runs" if self.loop == "runs" else f"{self.loop}: {self.fruitless} tries"
            self.health.set_alive(False, f"{what} in a row failed without progress, the last with {error}", self.loop)
