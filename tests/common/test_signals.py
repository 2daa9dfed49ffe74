"""`runtime.main` (the entry point of every service) stops its worker cleanly on SIGHUP, SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.waiting import eventually

pytestmark = pytest.mark.unit  # a subprocess, no broker

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def signal_worker(marker: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`tests.common.signal_worker` started (it wrote "started"); killed at the end if it is still running."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.common.signal_worker", str(marker), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: (marker.exists() and marker.read_text() == "started") or proc.poll() is not None,
                   timeout=30, what="the worker starts")
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stop_signal_lets_the_worker_finish_and_exit_0(tmp_path: Path, sig: signal.Signals) -> None:
    """The signal sets `stop`: the worker returns on its own (it writes "stopped") and the process exits 0."""
    marker = tmp_path / "marker"
    with signal_worker(marker) as proc:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert marker.read_text() == "stopped"


def test_a_stop_that_outlasts_its_deadline_ends_the_process_as_if_killed(tmp_path: Path) -> None:
    """A worker whose stop never ends (waiting on a broker gone) is ended `stop_deadline_s` after SIGTERM, exit 0,
    `service.stop_forced` logged: not left to the orchestrator's SIGKILL, unlogged (before: SIGTERM was the last
    word, and the process ran on)."""
    marker = tmp_path / "marker"
    with signal_worker(marker, "stuck", "1.5") as proc:
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
        took = time.monotonic() - began
    assert proc.returncode == 0, stderr
    assert marker.read_text() == "stopping" and took >= 1.5
    assert '"service.stop_forced"' in stderr and "stop_deadline_s (1.5 s)" in stderr


def test_a_second_stop_signal_ends_the_process_at_once(tmp_path: Path) -> None:
    """With the deadline far off, a second SIGTERM ends the stuck stop at once (before: it did nothing)."""
    marker = tmp_path / "marker"
    with signal_worker(marker, "stuck", "120") as proc:
        proc.send_signal(signal.SIGTERM)
        eventually(lambda: marker.read_text() == "stopping", timeout=10, what="the stop under way")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert '"service.stop_forced"' in stderr and "a second stop signal" in stderr
