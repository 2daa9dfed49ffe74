"""Which event ids intake has already published, per raw partition.

A repeated id is published once. The set is partition-aligned with the raw
topics (changelog partition = raw partition), written to the changelog in the
same transaction as the canonical record and restored on assignment, so it
survives crashes and moves with its partition. Ids older than the window are
forgotten (the changelog topic's retention matches).
"""

from __future__ import annotations

from datetime import timedelta

import orjson

WINDOW = timedelta(days=7)


def changelog_record(family: str, partition: int, first_offset: int, ids: list[str], at_ms: int) -> tuple[bytes, bytes]:
    """One changelog record per raw partition and transaction: the ids it published (one send, not one per id)."""
    return f"{family}:{partition}:{first_offset}".encode(), orjson.dumps({"at": at_ms, "ids": ids})


def read_changelog_record(key: bytes, value: bytes) -> tuple[str, int, list[str]]:
    """(family, at_ms, ids) of a changelog record."""
    body = orjson.loads(value)
    return key.split(b":", 1)[0].decode(), int(body["at"]), list(body["ids"])


class SeenIds:
    """Event ids seen in one raw partition, with the time (ms) each was first published."""

    __slots__ = ("_first_seen", "_window_ms")

    def __init__(self, window: timedelta = WINDOW) -> None:
        self._first_seen: dict[str, int] = {}
        self._window_ms = int(window.total_seconds() * 1000)

    def __len__(self) -> int:
        return len(self._first_seen)

    def __contains__(self, key: str) -> bool:
        return key in self._first_seen

    def add(self, key: str, at_ms: int) -> None:
        self._first_seen.setdefault(key, at_ms)

    def expire(self, now_ms: int) -> int:
        """Forget ids older than the window; returns how many were forgotten."""
        cutoff = now_ms - self._window_ms
        old = [k for k, t in self._first_seen.items() if t < cutoff]
        for k in old:
            del self._first_seen[k]
        return len(old)
