"""The deadline tracker's child process and the watch that ties its life to the worker's (services/notify/tracker)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from services.notify.tracker import TrackerExited, TrackerProcess

pytestmark = pytest.mark.unit


def child(seconds: float) -> TrackerProcess:
    return TrackerProcess(subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"]))


async def test_a_tracker_that_ends_on_its_own_ends_the_worker() -> None:
    """The tracker exits while the worker runs: the watch raises, so the worker ends and both are restarted."""
    with pytest.raises(TrackerExited):
        await child(0).watch(asyncio.Event(), every_s=0.05, grace_s=0.1)


async def test_a_tracker_ended_by_the_same_signal_as_the_worker_is_no_failure() -> None:
    """A SIGTERM to the process group reaches both: the tracker's end while the worker stops is returned, not raised
    (it was logged as a crash on every Ctrl-C of the demo)."""
    stopping = asyncio.Event()
    tracker = child(0)
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, stopping.set)  # the worker's own signal handler, a moment after the tracker's end
    await tracker.watch(stopping, every_s=0.05, grace_s=2.0)
    assert stopping.is_set()


async def test_the_watch_returns_when_the_worker_stops_first_and_the_tracker_stops_meanwhile() -> None:
    """The worker stopping while the tracker still runs: the watch returns and the tracker is told to stop at once,
    so it stops while the worker does (before: only after the worker's stop, its 20 s on top of the worker's)."""
    stopping = asyncio.Event()
    stopping.set()
    tracker = child(30)
    try:
        await asyncio.wait_for(tracker.watch(stopping, every_s=0.05), timeout=5)
        assert tracker.process.wait(timeout=5) == -signal.SIGTERM
    finally:
        tracker.stop()
