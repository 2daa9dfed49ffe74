"""The last lines of the logs a failed test's services wrote, attached to its report (tests/conftest.py).

A service a test starts writes its output to a `*.log` under the test's `tmp_path` (`kafkatools.start_service`), a
directory CI throws away with the clone: a failure seen only in CI (a loaded machine, a timing) said what the test
waited for and nothing of what the service did meanwhile. The report now carries each log's last lines, warnings
and errors first, so the failure's own output tells.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

LINES = 25
"""Last lines kept of each log, and as many of its last warnings and errors."""
WIDTH = 400
"""Characters kept of each line (a JSON event with a stack trace is long)."""
MAX_LOGS = 6
LOUD = ('"level": "warning"', '"level": "error"', '"level": "critical"', "Traceback", "Error")


def logs_of(directory: Path) -> list[Path]:
    """The logs under `directory` (its top two levels), newest first."""
    found = [p for pattern in ("*.log", "*/*.log") for p in directory.glob(pattern) if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_LOGS]


def tail(path: Path) -> str:
    """`path`'s last warnings and errors, then its last lines, each cut to `WIDTH`."""
    last: deque[str] = deque(maxlen=LINES)
    loud: deque[str] = deque(maxlen=LINES)
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.rstrip("\n")[:WIDTH]
            last.append(line)
            if any(mark in line for mark in LOUD):
                loud.append(line)
    parts = [f"== {path.name}: last warnings and errors ==", *loud] if loud else []
    return "\n".join([*parts, f"== {path.name}: last lines ==", *last])


def section(directory: Path | None) -> str:
    """The report section for a failed test whose `tmp_path` is `directory` ("" if it holds no log)."""
    if directory is None or not directory.is_dir():
        return ""
    return "\n".join(tail(p) for p in logs_of(directory))
