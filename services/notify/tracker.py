"""The deadline tracker (`deadline_worker`) as a child process of the notify worker, and the watch tying their lives.

The tracker dies with its parent (Linux PR_SET_PDEATHSIG, also after a SIGKILL);
when the tracker dies, the watch (a supervised task) fails and the worker ends
with it, so the process manager restarts both.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys

import structlog

log = structlog.get_logger("notify")
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 5.0
"""How long the worker waits for the tracker after its own stop; a tracker still running is killed (what it did not
commit is redone). A SIGTERM to the worker alone, as from a container runtime, reaches the tracker when the worker's
stop begins (`watch`): it has stopped meanwhile, as the worker did."""


STOP_AT_EOF = "--stop-at-eof"
"""The tracker stops when its standard input ends: how notify asks it to (`TrackerProcess.ask`)."""


class TrackerExited(Exception):
    """The deadline tracker process ended while the worker was running."""


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM when the parent dies; a lower CPU priority (its work is tick-based,
    the worker's is latency-bound)."""
    os.nice(5)
    with contextlib.suppress(OSError):  # not Linux: the tracker is stopped by `stop` only
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TrackerProcess:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.asked = False

    @classmethod
    def start(cls) -> TrackerProcess:
        """`python -m services.notify.deadline_worker` with this process's environment (the same settings), told to
        stop by the end of its standard input (`ask`)."""
        return cls(subprocess.Popen([sys.executable, "-m", "services.notify.deadline_worker", STOP_AT_EOF],
                                    env=dict(os.environ), stdin=subprocess.PIPE, preexec_fn=_die_with_parent))

    def ask(self) -> None:
        """Ask the tracker to stop, once: its standard input ends, which it takes as a first stop signal and as no
        second one. A SIGTERM here beside one to the process group (a terminal's Ctrl-C, systemd's stop, `kill` of
        notify while `watch` signalled it too) was a second signal: the tracker's stop was forced, its last commit
        cut short, an ERROR logged (4 stops of 7, ops audit)."""
        if self.asked:
            return
        self.asked = True
        if self.process.stdin is None:  # started without the pipe: a signal is the only way
            self.process.terminate()
            return
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    async def watch(self, stopping: asyncio.Event, every_s: float = 1.0, grace_s: float = 2.0) -> None:
        """Return when the worker is stopping (the tracker then told to stop too, if a SIGTERM to the process
        group, as from a terminal or `make demo`, has not reached it already) or it has ended; raise
        `TrackerExited` if the tracker ends otherwise."""
        # Polled: the child was started before the event loop (it outlives the worker's restarts), so its exit
        # has no awaitable here.
        while (code := self.process.poll()) is None:
            if stopping.is_set():
                self.ask()  # it stops while the worker does, not after it
                return
            await asyncio.sleep(every_s)
        with contextlib.suppress(TimeoutError):  # the same signal may still be on its way to this process
            await asyncio.wait_for(stopping.wait(), timeout=grace_s)
        if stopping.is_set():
            log.info("notify.tracker_stopped", returncode=code)
            return
        log.error("notify.tracker_exited", returncode=code)
        raise TrackerExited(f"deadline tracker exited with code {code}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process.poll() is not None:
            return
        self.ask()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # said: its own log just ends after its stop was asked for (audit)
            log.warning("notify.tracker_killed", after_s=timeout_s)
            self.process.kill()
            self.process.wait()
