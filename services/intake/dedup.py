"""Which event ids intake has already published, per raw partition.

A repeated id is published once. The set is partition-aligned with the raw
topics (changelog partition = raw partition), written to the changelog in the
same transaction as the canonical record and restored on assignment
(`services.intake.restore`), so it survives crashes and moves with its
partition. Ids older than the window are forgotten (the changelog topic's
retention matches). Pure: no Kafka, no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import orjson

from schemas.events import Family

WINDOW = timedelta(days=7)
EXPIRY_INTERVAL_MS = 60_000


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


class SeenByPartition:
    """The `SeenIds` of every raw (family, partition) this worker owns, and their once-a-minute expiry."""

    __slots__ = ("_next_expiry_ms", "by_partition")

    def __init__(self) -> None:
        self.by_partition: dict[tuple[Family, int], SeenIds] = {}
        self._next_expiry_ms = 0

    def __len__(self) -> int:
        """Ids remembered over all partitions."""
        return sum(len(s) for s in self.by_partition.values())

    def of(self, family: Family, partition: int) -> SeenIds:
        """The ids of one raw partition (empty the first time it is asked for)."""
        seen = self.by_partition.get((family, partition))
        if seen is None:
            seen = self.by_partition[(family, partition)] = SeenIds()
        return seen

    def missing(self, partitions: Iterable[tuple[Family, int]]) -> set[tuple[Family, int]]:
        """The partitions among `partitions` that have no state here yet (they need a restore)."""
        return set(partitions) - set(self.by_partition)

    def forget(self, partitions: Iterable[tuple[Family, int]]) -> None:
        """Drop the state of partitions that left this worker (their next owner restores it)."""
        for key in partitions:
            self.by_partition.pop(key, None)

    def expire_due(self, now_ms: int, interval_ms: int = EXPIRY_INTERVAL_MS) -> None:
        """Forget ids older than the window, at most once per `interval_ms` (a full scan of the ids)."""
        if now_ms < self._next_expiry_ms:
            return
        for seen in self.by_partition.values():
            seen.expire(now_ms)
        self._next_expiry_ms = now_ms + interval_ms
