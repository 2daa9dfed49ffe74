"""Processes as /proc shows them (Linux): a process tree, and which of its processes are still alive."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    group: int
    started: int  # clock ticks after boot: with the pid, names one process even once the pid is reused
    zombie: bool


def read(pid: int) -> Proc | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return Proc(pid, int(fields[1]), int(fields[2]), int(fields[19]), fields[0] == "Z")


def everything() -> list[Proc]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ValueError):
                if (p := read(int(entry.name))) is not None:
                    found.append(p)
    return found


def tree(root: int) -> set[Proc]:
    """`root` and every process descended from it, now."""
    procs = everything()
    keep = {p for p in procs if p.pid == root}
    grew = True
    while grew:
        pids = {p.pid for p in keep}
        more = {p for p in procs if p.ppid in pids} - keep
        keep |= more
        grew = bool(more)
    return keep


def alive(procs: set[Proc]) -> set[Proc]:
    """Those of `procs` still running (the same pid and start time, not a zombie)."""
    left = set()
    for p in procs:
        now = read(p.pid)
        if now is not None and now.started == p.started and not now.zombie:
            left.add(p)
    return left


def in_groups(groups: set[int]) -> set[Proc]:
    """Every live process of the given process groups."""
    return {p for p in everything() if p.group in groups and not p.zombie}
