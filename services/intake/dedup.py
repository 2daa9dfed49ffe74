"""Which events intake has already published, per raw partition.

An event is its source and id (CloudEvents: the id is unique per source; two communes' systems may both
number their events from 1): a repeated (source, id) is published once. The set is partition-aligned with the raw
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


SEPARATOR = "\x1f"
"""Between source and id in a published key: a control character, which no identifier may hold (`limits`)."""


def published_key(source: str, event_id: str) -> str:
    """What identifies a published event: its source and id."""
    return f"{source}{SEPARATOR}{event_id}"


def changelog_record(family: str, partition: int, first_offset: int, keys: list[str],
                     at_ms: int) -> tuple[bytes, bytes]:
    """One changelog record per raw partition and transaction: the `published_key`s of what it published (one
    send, not one per event)."""
    ids = [key.rpartition(SEPARATOR)[2] for key in keys]  # the earlier form too: a worker of the previous release
    # (a rolling upgrade, a rollback within the window) restores it as before instead of failing on a missing "ids"
    return f"{family}:{partition}:{first_offset}".encode(), orjson.dumps({"at": at_ms, "keys": keys, "ids": ids})


class UnreadableChangelog(ValueError):
    """A de-duplication changelog record not in the form intake writes; its message is the kind of problem only
    (`PROBLEMS`), never the record's key or value: published keys are sources and event ids, which may be a
    citizen's number."""


PROBLEMS = ("a tombstone", "no key", "an unknown family", "not JSON", "not a JSON object", "no integer time",
            "keys not a list of strings", "ids not a list of strings")
"""What `read_changelog_record` finds wrong with a record (`UnreadableChangelog`'s message)."""
FAMILIES = {f.value.encode(): f for f in Family}


def read_changelog_record(key: bytes | None, value: bytes | None) -> tuple[Family, int, list[str], list[str]]:
    """(family, at_ms, published keys, legacy ids) of a changelog record; `UnreadableChangelog` for any record not in
    the form `changelog_record` writes (a tombstone, bytes that are not JSON, an unknown family, a member of another
    type): the restore skips it, as it must, since the changelog is read at every assignment and one record that
    raised out of it ended every start (audit). A record with members of the right types is taken as it is: at worst
    its ids are remembered for the window, which delays another event of the same source and id.

    Records written before events were told apart by source hold bare event ids (`ids`): they are restored as
    legacy ids, which stand for their id from any source until the window forgets them (an event published
    before the change is still published once; another source's event with the same id waits out the window).
    """
    if value is None:
        raise UnreadableChangelog(PROBLEMS[0])
    if key is None:
        raise UnreadableChangelog(PROBLEMS[1])
    family = FAMILIES.get(key.split(b":", 1)[0])
    if family is None:
        raise UnreadableChangelog(PROBLEMS[2])
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise UnreadableChangelog(PROBLEMS[3]) from None
    if not isinstance(body, dict):
        raise UnreadableChangelog(PROBLEMS[4])
    at_ms = body.get("at")
    if type(at_ms) is not int:  # not a bool either
        raise UnreadableChangelog(PROBLEMS[5])
    if "keys" in body:  # this form: its "ids" are only for the previous release
        return family, at_ms, _strings(body["keys"], PROBLEMS[6]), []
    return family, at_ms, [], _strings(body.get("ids", []), PROBLEMS[7])


def _strings(member: object, problem: str) -> list[str]:
    if not isinstance(member, list) or not {*map(type, member)} <= {str}:  # cheap beside the parse
        raise UnreadableChangelog(problem)
    return member


class SeenIds:
    """The events published from one raw partition (`published_key`s), with the time (ms) each was first published;
    and the legacy ids restored from older changelog records (`read_changelog_record`)."""

    __slots__ = ("_first_seen", "_legacy", "_window_ms")

    def __init__(self, window: timedelta = WINDOW) -> None:
        self._first_seen: dict[str, int] = {}
        self._legacy: dict[str, int] = {}
        self._window_ms = int(window.total_seconds() * 1000)

    def __len__(self) -> int:
        return len(self._first_seen) + len(self._legacy)

    def __contains__(self, key: str) -> bool:
        return key in self._first_seen

    def published(self, source: str, event_id: str) -> bool:
        """Whether the event `source` numbered `event_id` was published from this partition within the window."""
        return published_key(source, event_id) in self._first_seen or (bool(self._legacy) and event_id in self._legacy)

    def add(self, key: str, at_ms: int) -> None:
        self._first_seen.setdefault(key, at_ms)

    def add_legacy(self, event_id: str, at_ms: int) -> None:
        self._legacy.setdefault(event_id, at_ms)

    def expire(self, now_ms: int) -> int:
        """Forget what is older than the window; returns how many were forgotten.

        Ids are added in the order of their times (a batch's wall clock; a restore in changelog order) and a dict
        keeps that order, so the expired ids are its first: the scan stops at the first id within the window. Its
        cost is the ids forgotten, not all ids (a full scan of 30 M ids held the event loop ~2.4 s a minute, state
        audit). An id out of order (a clock stepped back) is forgotten late, never early: that only widens the
        window. An id stamped ahead of `now_ms` (by a worker whose clock ran fast, or restored from its changelog
        record) is stamped `now_ms` and moved behind the others when the scan meets it: it held every id behind it
        until its time came (one id 30 days ahead kept 100,000 ids of a week past their window; review)."""
        cutoff = now_ms - self._window_ms
        forgotten = 0
        for first_seen in (self._first_seen, self._legacy):
            old, ahead = [], []
            for k, t in first_seen.items():
                if t > now_ms:
                    ahead.append(k)
                    continue
                if t >= cutoff:
                    break
                old.append(k)
            for k in old:
                del first_seen[k]
            for k in ahead:
                del first_seen[k]
                first_seen[k] = now_ms
            forgotten += len(old)
        return forgotten


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
        """Forget ids older than the window, at most once per `interval_ms` (a full scan of the ids); at once when the
        clock stepped back past the last scan (waiting for the old clock's next one held the expiry off that long)."""
        if self._next_expiry_ms - interval_ms <= now_ms < self._next_expiry_ms:
            return
        for seen in self.by_partition.values():
            seen.expire(now_ms)
        self._next_expiry_ms = now_ms + interval_ms
