"""A row's in-process restarts are counted in every worker's log: a killed worker's /metrics can't be read, and its
restarts used to go uncounted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.scenario import RESTARTING, Stage, restarts
from tests.faults import Worker
from tests.waiting import eventually

pytestmark = pytest.mark.unit


def worker(tmp_path: Path, name: str, lines: list[str]) -> Worker:
    """A process that logs `lines` (as a service logs, on standard error) and then waits to be ended."""
    log = tmp_path / f"{name}.log"
    script = f"import sys, time\nfor line in {lines!r}:\n    print(line, file=sys.stderr, flush=True)\ntime.sleep(60)"
    with open(log, "ab") as handle:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=handle, stderr=subprocess.STDOUT)
    return Worker("x", name, 0, log, proc)


def line(event: str, **fields: object) -> str:
    return json.dumps({"event": event, "level": "error", **fields})


def test_restarts_count_every_workers_log_lines_killed_and_paused_ones_too(tmp_path: Path) -> None:
    restarting = line(RESTARTING, service="intake", error_type="KafkaConnectionError")
    killed = worker(tmp_path, "a", [restarting, restarting])
    paused = worker(tmp_path, "b", [restarting])
    live = worker(tmp_path, "c", [line("service.started"), f"not json {RESTARTING}", line(f"{RESTARTING}.not"),
                                  json.dumps({"msg": RESTARTING}), json.dumps([RESTARTING])])
    stage = Stage("127.0.0.1:1", "ns", tmp_path, workers=[killed, paused, live])
    try:
        for w, written in zip(stage.workers, (2, 1, 5), strict=True):  # each has written its lines
            eventually(lambda w=w, n=written: w.log.read_text().count("\n") == n, timeout=30,
                       what=f"{w.name}'s lines")
        killed.kill()
        paused.pause()
        assert [w.logged(RESTARTING) for w in stage.workers] == [2, 1, 0]
        assert restarts(stage) == 3
        assert stage.exits == []  # killed on purpose: not an unbidden exit
    finally:
        for w in stage.workers:
            w.stop()


def test_a_log_kept_from_an_earlier_run_counts_only_this_process_lines(tmp_path: Path) -> None:
    """`make chaos --workdir` again appends to the rows' logs: an earlier run's restarts are not this worker's
    (a review: one earlier line counted for a worker that logged nothing)."""
    (tmp_path / "w.log").write_text(line(RESTARTING) + "\n")
    w = Worker.start("this", "w", {}, "UNUSED_PORT", tmp_path)  # `python -m this` prints a poem and ends
    try:
        eventually(lambda: w.proc.poll() is not None, timeout=30, what="python -m this ended")
        assert "Beautiful is better than ugly." in w.log.read_text()
        assert w.logged(RESTARTING) == 0
    finally:
        w.stop()
