"""Which event ids intake has already published, per raw partition.

A repeated id is published once. The set is partition-aligned with the raw
topics (changelog partition = raw partition), written to the changelog in the
same transaction as the canonical record and restored on assignment, so it
survives crashes and moves with its partition. Ids older than the window are
forgotten (the changelog topic's retention matches).
"""

from __future__ import annotations

from datetime import timedelta

WINDOW = timedelta(days=7)


def changelog_key(family: str, event_id: str) -> bytes:
    return f"{family}:{event_id}".encode()


class SeenIds:
    """Event ids seen in one raw partition, with the time (ms) each was first published."""

    __slots__ = ("_first_seen", "_window_ms")

    def __init__(self, window: timedelta = WINDOW) -> None:
        self._first_seen: dict[bytes, int] = {}
        self._window_ms = int(window.total_seconds() * 1000)

    def __len__(self) -> int:
        return len(self._first_seen)

    def __contains__(self, key: bytes) -> bool:
        return key in self._first_seen

    def add(self, key: bytes, at_ms: int) -> None:
        self._first_seen.setdefault(key, at_ms)

    def expire(self, now_ms: int) -> int:
        """Forget ids older than the window; returns how many were forgotten."""
        cutoff = now_ms - self._window_ms
        old = [k for k, t in self._first_seen.items() if t < cutoff]
        for k in old:
            del self._first_seen[k]
        return len(old)
