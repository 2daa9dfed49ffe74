"""Log lines that a sender can cause at no cost to itself, written sparingly: a 401 costs its sender nothing, and one
line each would let anyone fill the log (and the disk behind it) at their own rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

EVERY_S = 10.0
"""At most one line per kind this often."""
MOST_KINDS = 1024
"""Kinds a table holds at most: past it, it starts afresh (each kind's next line passes at once)."""


class Sparse:
    """Whether a line of some kind is due: the first of a kind is, then one every `every_s` at most; the ones held
    back are counted into the next line (`due` returns how many it stands for). Kinds must be a fixed set (endpoint
    names, fixed reasons): the table holds one entry per kind."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self._clock = every_s, clock
        self._kinds: dict[Hashable, tuple[float, int]] = {}

    def due(self, kind: Hashable) -> int | None:
        """How many lines of `kind` the line to write now stands for (this one and those held back), or None if it
        is held back too."""
        now = self._clock()
        if kind not in self._kinds and len(self._kinds) >= MOST_KINDS:
            self._kinds.clear()
        logged_at, held = self._kinds.get(kind, (now - self.every_s, 0))
        if now - logged_at >= self.every_s:
            self._kinds[kind] = (now, 0)
            return held + 1
        self._kinds[kind] = (logged_at, held + 1)
        return None

    def clear(self) -> None:
        self._kinds.clear()


class SparseRecords(logging.Filter):
    """A logging filter for a library's logger whose warnings a peer can cause at will (uvicorn's "Invalid HTTP
    request received." per garbage connection, "Unsupported upgrade request." per upgrade header): each message
    template passes sparingly (`Sparse`), the next one that passes saying how many were held back; errors and worse
    always pass unless `errors`. Message templates are the library's own fixed strings (the table holds one entry
    each, `MOST_KINDS` at most). With `prefix`, records of other loggers pass untouched (a handler's filter)."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic, *,
                 errors: bool = False, prefix: str = "") -> None:
        super().__init__()
        self.lines, self.errors, self.prefix = Sparse(every_s, clock), errors, prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix) or (record.levelno >= logging.ERROR and not self.errors):
            return True
        lines = self.lines.due((record.name, record.levelno, str(record.msg)))
        if lines is None:
            return False
        if lines > 1:
            record.msg = f"{record.msg} ({lines - 1} more held back since the last such line)"
        return True
