"""A stop signal that comes while a service is still importing its modules and reading its settings (about the first
second of `python -m services.<name>`) is answered as one that comes later: `service.stop_requested`, a clean stop,
exit 0. Before, Python's default handler ended the process at once and no line said it was asked to stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import keys_env

pytestmark = pytest.mark.unit  # subprocesses, no broker: the stop comes before any run

ROOT = Path(__file__).resolve().parents[2]
SIGTERM_DURING_IMPORTS = """
import os, runpy, signal, sys

class Trip:
    '''SIGTERM to this process when the entry point begins to import the runtime (mid-start, before its handlers).'''
    def find_spec(self, name, path=None, target=None):
        if name == "services.common.runtime":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, Trip())
runpy.run_module(sys.argv[1], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("service", ["intake", "notify", "metrics", "gateway", "notify.deadline_worker"])
def test_a_sigterm_while_starting_is_logged_and_stops_cleanly(service: str, tmp_path: Path) -> None:
    """SIGTERM while the entry point imports the runtime: logged as requested (by SIGTERM), stopped, exit 0."""
    env = {**os.environ, **keys_env.PRIVACY_ENV, "KAFKA_BOOTSTRAP": "127.0.0.1:1", "INTAKE_SOURCES_FILE": "",
           "NOTIFY_DEADLINES": "false", "METRICS_STATE_DIR": str(tmp_path / "metrics"),
           **{f"{name.upper()}_HTTP_PORT": "0" for name in ("intake", "notify", "metrics", "gateway")}}
    done = subprocess.run([sys.executable, "-c", SIGTERM_DURING_IMPORTS, f"services.{service}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stderr.splitlines() + done.stdout.splitlines()
              if line.startswith("{")]
    said = [(e["event"], e.get("by")) for e in events if e["event"].startswith("service.stop")]
    assert said == [("service.stop_requested", "SIGTERM"), ("service.stopped", None)]


def test_a_second_sigterm_while_starting_ends_the_process_at_once(tmp_path: Path) -> None:
    """Asked twice while starting (a start hung before the runtime's handlers), the process ends at once, as Python's
    default did: holding the first signal must not make a stuck start deaf to the operator."""
    twice = SIGTERM_DURING_IMPORTS.replace("os.kill(os.getpid(), signal.SIGTERM)",
                                           "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGTERM)")
    assert twice != SIGTERM_DURING_IMPORTS
    env = {**os.environ, **keys_env.PRIVACY_ENV, "KAFKA_BOOTSTRAP": "127.0.0.1:1", "INTAKE_HTTP_PORT": "0"}
    done = subprocess.run([sys.executable, "-c", twice, "services.intake"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -15, (done.returncode, done.stderr[-2000:])
