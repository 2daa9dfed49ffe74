"""A second stop signal while notify waits for its deadline tracker is the runtime's forced stop, not Python's
default handler (`services.notify.__main__`; a subprocess, no broker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import eventually

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("worker", ["idle", "outage"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_second_signal_during_the_trackers_stop_is_a_forced_stop(tmp_path: Path, sig: signal.Signals,
                                                                   worker: str) -> None:
    """notify stopping waits for a tracker slow to stop; a second signal meanwhile ends it with exit 0 and
    `service.stop_forced` logged. Before, the wait came after the runtime had removed its handlers: a second SIGINT
    gave a KeyboardInterrupt traceback (exit -2), a second SIGTERM killed it unlogged (-15). `outage`: the stop lands
    between runs (each fails, as in a broker outage), where the worker's own last step never ran (review)."""
    env = {**os.environ, "NOTIFY_HTTP_PORT": "0", "NOTIFY_DEADLINE_WEB_PORT": "0", "NOTIFY_DEADLINES": "true",
           "NOTIFY_WITHOUT_PRIVACY_KEYS": "true", "NOTIFY_LOG_LEVEL": "INFO", "PRIVACY_KEK": "", "PRIVACY_PEPPER": ""}
    proc = subprocess.Popen([sys.executable, "-m", "tests.notify.stubborn_tracker", str(tmp_path), worker], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually(lambda: (tmp_path / "started").exists() or proc.poll() is not None, timeout=30,
                   what="notify's worker running")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        eventually(lambda: (tmp_path / "asked").exists(), timeout=30, what="the tracker asked to stop")
        time.sleep(1.5)  # notify is waiting for the tracker now (5 s at most): its worker has nothing else to stop
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert '"service.stop_forced"' in output and "a second stop signal" in output, output
    assert "Traceback" not in output, output
