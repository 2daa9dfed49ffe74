"""The demo's supervisor: each child's output in its log file; stop() ends whole process groups, SIGKILL last."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from services.demo import supervise
from services.demo.processes import Child
from tests.demo import proctree
from tests.waiting import eventually

pytestmark = pytest.mark.unit

IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
STUBBORN = (IGNORE_TERM + "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
            f"{IGNORE_TERM + 'time.sleep(600)'!r}]); print('up', flush=True); time.sleep(600)")
POLITE = "import time; print('up', flush=True); time.sleep(600)"


def test_stop_ends_every_group_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    """A child that stops on SIGTERM stops; one that ignores it, and its grandchild, get SIGKILL after the timeout."""
    children = [Child("polite", [sys.executable, "-c", POLITE]), Child("stubborn", [sys.executable, "-c", STUBBORN])]
    running = supervise.start(children, dict(os.environ), tmp_path / "logs", tmp_path)
    seen: set[proctree.Proc] = set()
    try:
        eventually(lambda: all((tmp_path / "logs" / f"{c.name}.log").read_text() == "up\n" for c in children),
                   what="both children wrote to their log files")
        seen = proctree.tree(running[0].process.pid) | proctree.tree(running[1].process.pid)
        assert len(seen) == 3  # polite, stubborn and stubborn's child
        assert {p.group for p in seen} == {r.process.pid for r in running}  # each child leads a group of its own
        killed = supervise.stop(running, timeout_s=1.0)
        assert killed == ["stubborn"]
        assert proctree.alive(seen) == set()
        assert running[0].process.returncode == -signal.SIGTERM and running[1].process.returncode == -signal.SIGKILL
    finally:
        for p in proctree.alive(seen):
            os.kill(p.pid, signal.SIGKILL)
