"""The matrix's rows side by side (`python -m tests.chaos --jobs N`): each row in a process of its own, at most N at a
time, the longest first.

A row mostly waits on clocks (a session timeout, a pause, a freeze, a broker's start), and each runs on a namespace,
and a broker or cluster where it strikes one, of its own, with ports no other row is given; so two rows at once take
the 30-row matrix from about 30 minutes to about the 20 the issue asks (README, chaos section), one 3-node cluster at
a time (`next_row`). A process per row
keeps one row's blocking calls and event loop from another's clocks. Each child writes its row as JSON
(`--result`); a child that ended without one is a failed row. Children run in sessions of their own, so a terminal's
Ctrl-C or a SIGTERM reaches them once, forwarded from here, and each stops its own workers and brokers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from tests.chaos.scenario import Counts, Row, Scenario

STOP_WAIT_S = 240.0
"""How long an interrupted row may take to stop its workers and remove its broker or cluster."""


def row_json(row: Row) -> str:
    return json.dumps(asdict(row))


def row_from_json(text: str) -> Row:
    fields = json.loads(text)
    counts = fields.pop("counts")
    return Row(**{**fields, "exits": tuple(fields["exits"]),
                  "counts": None if counts is None else Counts(**counts)})


def longest_first(scenarios: Sequence[Scenario]) -> list[Scenario]:
    """The rows by their budget, the largest first (a cluster's start and failover, a freeze, then the rest), so that
    no long row is left to run alone at the end."""
    return sorted(scenarios, key=lambda s: -s.budget_s)


def next_row(waiting: list[Scenario], running: Sequence[Scenario]) -> Scenario | None:
    """The first waiting row that may start beside `running`: never a second 3-node cluster. Two clusters' six JVMs
    on 2 cores slowed a controller's failover past intake's transaction timeout (`TransactionStuck`, a run restarted
    over the row's bound of 0, 2026-12-07), a finding of the machine's load rather than of the services."""
    busy = any(s.broker == "cluster" for s in running)
    return next((s for s in waiting if not (busy and s.broker == "cluster")), None)


class Interrupted(Exception):
    """SIGTERM or SIGINT reached the parent: its rows are told to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _child(scenario: Scenario, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    result = workdir / f"{scenario.name}.row.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.chaos", "--only", scenario.name, "--workdir", str(workdir),
               "--result", str(result)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True), result


def ended_row(scenario: Scenario, code: int, result: Path, began: float) -> Row:
    try:
        return row_from_json(result.read_text())
    except (OSError, ValueError, TypeError) as exc:
        return Row(scenario.name, None, None, error=f"its process exited {code} with no row ({type(exc).__name__})",
                   seconds=time.monotonic() - began)


def run_side_by_side(scenarios: Sequence[Scenario], workdir: Path, jobs: int) -> list[Row]:
    """Run `scenarios` at most `jobs` at a time; the rows come back in the order given. Raises `Interrupted` once every
    row begun has stopped, when a signal came."""
    workdir.mkdir(parents=True, exist_ok=True)
    waiting = longest_first(scenarios)
    running: dict[str, tuple[Scenario, subprocess.Popen[bytes], Path, float]] = {}
    done: dict[str, Row] = {}
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while waiting or running:
            while len(running) < jobs and (scenario := next_row(waiting, [r[0] for r in running.values()])):
                waiting.remove(scenario)
                proc, result = _child(scenario, workdir)
                running[scenario.name] = (scenario, proc, result, time.monotonic())
            for name, (scenario, proc, result, began) in list(running.items()):
                code = proc.poll()
                if code is not None:
                    done[name] = ended_row(scenario, code, result, began)
                    del running[name]
            time.sleep(0.2)
    except Interrupted:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not leave the rows' brokers running
        for _, proc, _, _ in running.values():
            proc.terminate()  # the row's own SIGTERM handler cancels it, and its clean-up runs
        for _, proc, _, _ in running.values():
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return [done[s.name] for s in scenarios]
