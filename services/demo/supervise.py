"""Start the demo's processes, each in a process group of its own with its output in a log file, and stop them all.

A group of its own: a terminal's Ctrl-C or hang-up reaches the demo only, which stops
each group (SIGTERM, then SIGKILL after a timeout), grandchildren included (notify's
deadline tracker). On Linux each child also gets SIGTERM should the demo itself die.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.demo.processes import Child

PR_SET_PDEATHSIG = 1


def _die_with_the_demo() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Running:
    child: Child
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def group(self) -> int:
        return self.process.pid  # start_new_session: the child leads its own group

    def group_alive(self) -> bool:
        """Whether any process of the child's group is left (the leader is reaped first, so it is no zombie)."""
        self.process.poll()
        try:
            os.killpg(self.group, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.group, sig)


def start(children: Sequence[Child], env: Mapping[str, str], log_dir: Path, cwd: Path) -> list[Running]:
    """Every child, started in order; its stdout and stderr go to `log_dir/<name>.log` (rewritten each run)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for child in children:
        log = log_dir / f"{child.name}.log"
        with open(log, "wb") as out:  # the child keeps its own descriptor
            process = subprocess.Popen(child.argv, env={**env, **child.env}, cwd=cwd, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_die_with_the_demo)
        running.append(Running(child, process, log))
    return running


def stop(running: Sequence[Running], timeout_s: float) -> list[str]:
    """SIGTERM to every group, SIGKILL to those left after `timeout_s`; returns the names that needed SIGKILL."""
    for r in running:
        if r.group_alive():
            r.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(r.group_alive() for r in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = [r.child.name for r in running if r.group_alive()]
    for r in running:
        if r.group_alive():
            r.signal_group(signal.SIGKILL)
    for r in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            r.process.wait(timeout=5)
    # SIGKILL is delivered at once but a grandchild dies when the kernel gets to it: wait (bounded) until the
    # groups are empty, so a caller that returns finds no process left (a CI run caught one still alive)
    deadline = time.monotonic() + 2.0
    while any(r.group_alive() for r in running) and time.monotonic() < deadline:
        time.sleep(0.02)
    return killed
