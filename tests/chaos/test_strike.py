"""A fault strikes a live worker: one that exited unbidden in the set-up is noted and replaced, never struck (striking
it marked it ended on purpose, and its crash went unseen)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from tests.chaos.injections import KillWorker, PauseWorker
from tests.chaos.scenario import Load, Stage
from tests.chaos.test_restart_count import worker
from tests.faults import Worker

pytestmark = pytest.mark.unit


def crashed(tmp_path: Path, name: str, code: int) -> Worker:
    """A worker that has exited by itself with `code`."""
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait(30)
    return Worker("x", name, 0, tmp_path / f"{name}.log", proc)


class Successors:
    """A load that only starts workers (a successor, or the replacement of one that exited)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.started = tmp_path, list[str]()

    def start_worker(self, stage: Stage, name: str) -> Worker:
        self.started.append(name)
        w = worker(self.tmp_path, name, [])
        stage.workers.append(w)
        return w


@pytest.mark.parametrize("fault", [KillWorker(), PauseWorker(seconds=0)], ids=["kill", "pause"])
def test_a_fault_strikes_a_live_worker_and_the_crash_before_it_fails_the_row(tmp_path: Path,
                                                                             fault: KillWorker | PauseWorker) -> None:
    load = Successors(tmp_path)
    stage = Stage("127.0.0.1:1", "ns", tmp_path, workers=[crashed(tmp_path, "w0", 3), worker(tmp_path, "w1", [])])
    stage.restart = load.start_worker
    try:
        asyncio.run(fault.inject(stage, cast(Load, cast(Any, load))))
        assert stage.exits == ["w0 exited 3"]  # seen, so the row is not clean
        assert stage.struck is stage.workers[1]
        assert stage.workers[1].proc.poll() is not None if isinstance(fault, KillWorker) else stage.workers[1].paused
        assert [w.name for w in stage.live()] == ["w0-restarted"]
        asyncio.run(fault.lift(stage, cast(Load, cast(Any, load))))
        expected = "w1-successor" if isinstance(fault, KillWorker) else None
        assert load.started == ["w0-restarted", *([expected] if expected else [])]
        assert not stage.workers[1].paused
    finally:
        for w in stage.workers:
            w.stop()
