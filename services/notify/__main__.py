"""`python -m services.notify`: the notify worker, plus the faust deadline tracker as a child process."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys

import structlog
from prometheus_client import start_http_server

from services.common.logging import configure
from services.notify.app import NotifyApp
from services.notify.settings import NotifySettings

log = structlog.get_logger("notify")


def _die_with_parent() -> None:
    """The tracker must not outlive a notify worker killed with SIGKILL (Linux PR_SET_PDEATHSIG).

    It also runs at a lower CPU priority: its work is tick-based, the worker's is latency-bound.
    """
    os.nice(5)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def start_tracker() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.notify.deadline_worker"], env=dict(os.environ),
                            preexec_fn=_die_with_parent)


async def _watch(tracker: subprocess.Popen[bytes], app: NotifyApp) -> None:
    """The worker stops (and its supervisor restarts both) if the deadline tracker dies."""
    while tracker.poll() is None:
        await asyncio.sleep(1)
    log.error("notify.tracker_exited", returncode=tracker.returncode)
    app.failed = True
    app.stopping.set()


async def serve(settings: NotifySettings, tracker: subprocess.Popen[bytes] | None) -> bool:
    app = NotifyApp(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stopping.set)
    watch = asyncio.create_task(_watch(tracker, app)) if tracker else None
    await app.run()
    if watch:
        watch.cancel()
    return not app.failed


def main() -> None:
    settings = NotifySettings()
    configure()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    tracker = start_tracker() if settings.deadlines else None
    ok = False
    try:
        ok = asyncio.run(serve(settings, tracker))
    finally:
        if tracker is not None and tracker.poll() is None:
            tracker.terminate()
            try:
                tracker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                tracker.kill()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
