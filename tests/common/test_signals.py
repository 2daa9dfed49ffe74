"""`runtime.main` (the entry point of every service) stops its worker cleanly on SIGHUP, SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import eventually

pytestmark = pytest.mark.unit  # a subprocess, no broker

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stop_signal_lets_the_worker_finish_and_exit_0(tmp_path: Path, sig: signal.Signals) -> None:
    """The signal sets `stop`: the worker returns on its own (it writes "stopped") and the process exits 0."""
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-m", "tests.common.signal_worker", str(marker)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: (marker.exists() and marker.read_text() == "started") or proc.poll() is not None,
                   timeout=30, what="the worker starts")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert marker.read_text() == "stopped"
