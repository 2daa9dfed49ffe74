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
    """The tracker must not outlive a notify worker killed with SIGKILL (Linux PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def start_tracker() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.notify.deadline_worker"], env=dict(os.environ),
                            preexec_fn=_die_with_parent)


async def serve(settings: NotifySettings) -> None:
    app = NotifyApp(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stopping.set)
    await app.run()


def main() -> None:
    settings = NotifySettings()
    configure()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    tracker = start_tracker() if settings.deadlines else None
    try:
        asyncio.run(serve(settings))
    finally:
        if tracker is not None and tracker.poll() is None:
            tracker.terminate()
            try:
                tracker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                tracker.kill()


if __name__ == "__main__":
    main()
