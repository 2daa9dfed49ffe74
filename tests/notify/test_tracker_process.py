"""The deadline tracker's child process and the watch that ties its life to the worker's (services/notify/tracker)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.notify.tracker import STOP_AT_EOF, TrackerExited, TrackerProcess
from tests.waiting import eventually

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


def test_a_tracker_that_does_not_stop_in_time_is_killed_and_that_is_said() -> None:
    """A tracker still running `timeout_s` after it was asked to stop is killed, and notify says so: the tracker's
    own log just ends after its stop was asked for, and nothing said why (audit)."""
    from structlog.testing import capture_logs

    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(30)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)  # no pipe: asked by SIGTERM
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"  # its handler set
    with capture_logs() as logs:
        TrackerProcess(process).stop(timeout_s=0.5)
    assert process.returncode == -signal.SIGKILL
    assert [entry["event"] for entry in logs] == ["notify.tracker_killed"], logs


def tracker_without_broker(tmp_path: Path) -> tuple[TrackerProcess, Path]:
    """The real tracker as `TrackerProcess.start` runs it, its broker refusing (it restarts with back-off, its signal
    handlers set), its log in a file."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    log = tmp_path / "tracker.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
           "NOTIFY_DEADLINE_WEB_PORT": "0"}
    with log.open("wb") as out:
        command = [sys.executable, "-m", "services.notify.deadline_worker", STOP_AT_EOF]
        tracker = TrackerProcess(subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=out, stderr=out))
    eventually(lambda: '"service.restarting"' in log.read_text(), timeout=60, what="the tracker running")
    return tracker, log


@pytest.mark.parametrize("group_signal", [True, False])
async def test_notify_asks_its_tracker_to_stop_without_a_second_signal(tmp_path: Path, group_signal: bool) -> None:
    """notify stopping asks its tracker to stop once (its standard input ends). With a SIGTERM to the process group
    besides (a terminal's Ctrl-C, systemd's stop) the tracker stops as after one signal: before, notify's own SIGTERM
    was a second one, and the tracker's stop was forced (`service.stop_forced`, 4 stops of 7; ops audit)."""
    tracker, log = tracker_without_broker(tmp_path)
    try:
        if group_signal:
            tracker.process.send_signal(signal.SIGTERM)
        stopping = asyncio.Event()
        stopping.set()
        await tracker.watch(stopping)
        tracker.stop(timeout_s=30)
        assert tracker.process.returncode == 0
        assert "stop_forced" not in log.read_text(), log.read_text()[-2000:]
    finally:
        tracker.process.kill()
