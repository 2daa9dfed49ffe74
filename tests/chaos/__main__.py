"""`python -m tests.chaos [--fast] [--only ROW ...] [--jobs N] [--list]`: the fault matrix against the real services.

Each row starts `python -m services.<name>` workers on a namespace of its own, sends records while a fault strikes
(SIGKILL, SIGSTOP past the session timeout, a broker restart, freeze (SIGSTOP) or node kill on a broker of the
row's own, the kill of the node that coordinates the service's transactions or group or is the active controller, a
rebalance storm, a provider outage, a network partition between one worker and a broker of the row's own), and
accounts for every record sent. The shared broker (`KAFKA_BOOTSTRAP`, default 127.0.0.1:9092; `make chaos` names the
one it started, on KAFKA_PORT if set) is used, never stopped.
Rows run two at a time by default, each in a process of its own (`--jobs`, tests/chaos/parallel.py).
Exits 1 when any row lost, duplicated or reordered something, had a worker exit or restart its run in-process past
the row's bound, or failed; the workers' logs stay in the working directory printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests import keys_env
from tests.chaos.matrix import MATRIX, NAMES
from tests.chaos.parallel import Interrupted, row_json, run_side_by_side
from tests.chaos.scenario import Row, Scenario, run
from tests.chaos.table import LEGEND, cells, render

JOBS = 2
"""Rows side by side by default: the full matrix in about 20 minutes rather than 30 (tests/chaos/parallel.py)."""


def chosen(only: list[str], fast: bool) -> list[Scenario]:
    wanted = {name for item in only for name in item.split(",") if name}
    unknown = wanted - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown row(s): {', '.join(sorted(unknown))}; rows: {', '.join(NAMES)}")
    return [s for s in MATRIX if (not wanted or s.name in wanted) and (s.fast or not fast)]


async def _row(scenario: Scenario, bootstrap: str, workdir: Path) -> Row:
    """`run`, which SIGTERM (a CI timeout, `timeout`, kill) cancels as Ctrl-C does, so that the row's clean-up stops
    its workers and its own broker or cluster: by default SIGTERM ended the process at once and left them running."""
    loop, me = asyncio.get_running_loop(), asyncio.current_task()
    assert me is not None
    loop.add_signal_handler(signal.SIGTERM, me.cancel)
    try:
        return await run(scenario, bootstrap, workdir)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    keys_env.apply()  # intake seals personal data: the services it starts need the keys
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="ROW", help="run only these rows (repeat or "
                        "comma-separate)")
    parser.add_argument("--fast", action="store_true", help="only the fast rows (those `make test` runs)")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--workdir", type=Path, help="where the workers' logs go (default: a new temporary directory)")
    parser.add_argument("--jobs", type=int, default=JOBS, metavar="N", help=f"rows run side by side, each in a "
                        f"process of its own (default {JOBS}; 1: one after another, in this process)")
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # a row's process (--jobs): its row, as JSON
    args = parser.parse_args(argv)
    scenarios = chosen(args.only, args.fast)
    if args.list:
        print("\n".join(f"{s.name}{' (fast)' if s.fast else ''}: {s.broker} broker, budget {s.budget_s:g} s"
                        for s in MATRIX))
        return 0
    # the feeders' and readers' retries while a broker is down are expected: the table, not their log, is the output
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="commune-chaos-"))
    rows: list[Row] = []
    began = time.monotonic()
    if args.jobs > 1 and len(scenarios) > 1 and args.result is None:
        try:
            rows = run_side_by_side(scenarios, workdir, args.jobs)
        except Interrupted as stop:
            print(f"chaos: stopped by {stop}; the rows begun stopped their workers and brokers", file=sys.stderr)
            return 128 + stop.signum
        return _report(rows, began, workdir)
    for scenario in scenarios:
        print(f"chaos: {scenario.name} ...", file=sys.stderr, flush=True)
        try:
            row = asyncio.run(_row(scenario, bootstrap, workdir / scenario.name))
        except asyncio.CancelledError:
            print(f"chaos: {scenario.name} stopped by SIGTERM; its workers and brokers were stopped", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("chaos: " + " | ".join(cells(row)), file=sys.stderr, flush=True)
        rows.append(row)
        if args.result is not None:
            args.result.write_text(row_json(row))
    if args.result is not None:
        return 0 if all(r.clean for r in rows) else 1
    return _report(rows, began, workdir)


def _report(rows: list[Row], began: float, workdir: Path) -> int:
    print(render(rows))
    print()
    print(LEGEND)
    print(f"\n{len(rows)} rows in {time.monotonic() - began:.0f} s; logs in {workdir}")
    return 0 if all(r.clean for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
