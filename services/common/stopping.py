"""A service's orderly stop: the stop signals, the stop's deadline, and what the process says about them.

The first SIGTERM, SIGINT or SIGHUP (or the end of the parent's pipe, `stop_at_eof`) sets the run's `stop` and turns
`/readyz` to 503 ("stopping") at once, for every service: a load balancer or Kubernetes then sends no new work to a
process that is about to close its ports (the gateway keeps serving a while for that, `GATEWAY_STOP_DELAY_S`). Before,
readiness fell only once the worker had returned, so `/readyz` said 200 for as long as the stop took, the gateway's
API port closed meanwhile. It logs `service.stop_requested` (with the signal) and, once the worker has returned,
`service.stopped` with the seconds the stop took. Past `stop_deadline_s`, or at a second signal, the process logs
`service.stop_forced` and exits 0 as if killed: everything is built to survive a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

import structlog

from services.common import early_stop
from services.common.closing import retrieved
from services.common.health import Health

log = structlog.get_logger("runtime")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
T = TypeVar("T")


class Stopping:
    """The stop signals' handlers of one `serve`, installed by `install` and removed by `release`."""

    def __init__(self, service: str, stop: asyncio.Event, health: Health, deadline_s: float) -> None:
        self.service, self.stop, self.health, self.deadline_s = service, stop, health, deadline_s
        self._loop = asyncio.get_running_loop()
        self._deadline: asyncio.TimerHandle | None = None
        self._signals: list[int] = []
        self._began: float | None = None
        self._fd: int | None = None

    def install(self, stop_at_eof: int | None = None) -> None:
        """Handle the stop signals, answering first those that came while the service was starting (`early_stop`)."""
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._signalled, sig)
        for early in early_stop.taken():
            self._signalled(early)
        if stop_at_eof is not None:
            self._fd = stop_at_eof
            self._loop.add_reader(stop_at_eof, self._asked, stop_at_eof)

    def release(self) -> None:
        """Remove the handlers (the worker has returned) and say how long the stop took, if one was asked for."""
        for sig in STOP_SIGNALS:
            self._loop.remove_signal_handler(sig)
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
        if self._deadline is not None:
            self._deadline.cancel()
        if self._began is not None:
            log.info("service.stopped", service=self.service, stop_s=round(time.monotonic() - self._began, 3))

    def begin(self, why: str) -> None:
        """Stop: not ready from now on, the worker told, the deadline running. Once; a later call does nothing."""
        if self._began is not None:
            return
        self._began = time.monotonic()
        log.info("service.stop_requested", service=self.service, by=why)
        self.health.stopping()
        self.stop.set()
        self._deadline = self._loop.call_later(self.deadline_s, forced_exit, self.service,
                                               f"not stopped within stop_deadline_s ({self.deadline_s:g} s)")

    def _signalled(self, sig: int) -> None:
        if self._signals:
            forced_exit(self.service, "a second stop signal")
        self._signals.append(sig)
        self.begin(signal.Signals(sig).name)

    def _asked(self, fd: int) -> None:
        with suppress(OSError):
            if os.read(fd, 4096):
                return
        self._loop.remove_reader(fd)  # the end of the pipe: the parent closed it, or ended; before or after a signal
        self._fd = None
        self.begin("the parent's pipe closed")


def forced_exit(service: str, why: str) -> None:
    """End the process now, as if killed, after saying why (stderr flushed: it is the last word)."""
    log.error("service.stop_forced", service=service, why=why)
    with suppress(OSError, ValueError):
        sys.stderr.flush()
        sys.stdout.flush()
    os._exit(0)


class Stopped:
    """What `unless_stopped` (and the simulator's `StopCuts`) return when the stop came first."""


STOPPED = Stopped()


async def unless_stopped(step: Awaitable[T], stop: asyncio.Event) -> T | Stopped:
    """`step`'s result (or its error), or `STOPPED` if `stop` was set first: the step is then cancelled, and not
    waited for (its outcome retrieved when it ends); so is it if the caller is cancelled."""
    doing, stopping = asyncio.ensure_future(step), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({doing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not doing.done():
            doing.cancel()
            doing.add_done_callback(retrieved)
    return doing.result() if doing.done() and not doing.cancelled() else STOPPED
