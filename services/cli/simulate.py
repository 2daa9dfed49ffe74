"""`commune-bus simulate`: the simulator (services.simulator) run as a child process, with a progress bar."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TimeElapsedColumn

from services.cli.options import DEFAULT_BOOTSTRAP, Bootstrap, Namespace
from services.cli.plain import markup
from services.cli.render import err_console


def simulate(province: Annotated[str, typer.Option()] = "20", rate: Annotated[float, typer.Option()] = 50,
             duration: Annotated[float, typer.Option(help="Seconds; 0 = until Ctrl-C")] = 60,
             invalid_share: Annotated[float, typer.Option()] = 0.05,
             seed: Annotated[int | None, typer.Option()] = None,
             national: Annotated[bool, typer.Option(
                 help="All 34 provinces and 3,321 communes at the national rate (--rate and --province ignored)")
             ] = False,
             profile: Annotated[str | None, typer.Option(help="flat, daily (morning peak) or peak (held)")] = None,
             day_seconds: Annotated[float | None, typer.Option(help="Real seconds per simulated day")] = None,
             bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "") -> None:
    """Run the simulator (services.simulator): realistic raw traffic for a province's communes, or the country's."""
    argv = simulator_argv(province=province, rate=rate, duration=duration, invalid_share=invalid_share, seed=seed,
                          national=national, profile=profile, day_seconds=day_seconds, bootstrap=bootstrap,
                          namespace=namespace)
    proc = subprocess.Popen(argv)
    started = time.monotonic()
    what = "all communes at the national rate" if national else f"province {markup(province)} at {rate}/s"
    # transient: the bar goes when the simulator ends, and one line says how (a refused start drew a bar all the same)
    with Progress(*Progress.get_default_columns()[:-1], BarColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(f"simulating {what}", total=duration or None)
        try:
            while proc.poll() is None:
                bar.update(task, completed=min(duration, time.monotonic() - started) if duration else 0)
                time.sleep(0.2)
        except KeyboardInterrupt:
            proc.wait()
    elapsed = time.monotonic() - started
    if proc.returncode == 0:
        err_console.print(f"simulated {what} for {duration or round(elapsed):g} s")  # its start not counted
    else:
        err_console.print(f"simulate: the simulator exited with status {proc.returncode} after {elapsed:.0f} s")
    raise typer.Exit(proc.returncode)


def simulator_argv(*, province: str, rate: float, duration: float, invalid_share: float, seed: int | None,
                   national: bool, profile: str | None, day_seconds: float | None, bootstrap: str,
                   namespace: str) -> list[str]:
    """The `python -m services.simulator` command line for `simulate`'s options (national: no rate, no province:
    the simulator derives the rate and refuses one)."""
    argv = [sys.executable, "-m", "services.simulator", "--duration", str(duration), "--invalid-share",
            str(invalid_share), "--bootstrap", bootstrap]
    argv += ["--national"] if national else ["--province", province, "--rate", str(rate)]
    argv += ["--profile", profile] if profile else []
    argv += ["--day-seconds", str(day_seconds)] if day_seconds is not None else []
    argv += ["--namespace", namespace] if namespace else []
    argv += ["--seed", str(seed)] if seed is not None else []
    return argv
