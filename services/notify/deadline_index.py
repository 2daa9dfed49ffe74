"""One partition of the deadline tracker: tracked dossiers and their due-time index in one ordered RocksDB store.

Two key spaces in one store (rocksdict, raw mode):
- `s<commune>:<dossier>` -> the dossier's `TrackedDossier` JSON (also its changelog value);
- `t<8-byte big-endian µs of its wake time><commune>:<dossier>` -> empty: the index.

Every change of a dossier goes through `_put`, which removes the old index entry (the old state's
`deadlines.wake_at`) and writes the new one, so the index holds exactly one entry per open dossier that
can still alert, at the time its next alert becomes due; one per open dossier whose alerts have all fired,
at the time it is dropped (`deadlines.KEEP_OPEN_PAST_DUE` past its due date); and one per closed dossier, at
the time it is forgotten (`deadlines.KEEP_CLOSED` after its closing event: until then an older event arriving
late is stale and cannot reopen it). A tick (`fire`) reads the index from its start up to `now` and touches only
those dossiers: its cost is the number of alerts due (and of closed dossiers to forget), not the number
of open dossiers. The rules stay in `deadlines` (pure); this module only decides which dossiers to ask.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import orjson
from rocksdict import Rdict

from schemas.notification import DeadlineAlert, TrackedDossier
from services.common.changelog import YIELD_EVERY_S
from services.notify import deadlines

STATE = b"s"
INDEX = b"t"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Change = tuple[bytes, bytes | None]
"""A changelog record: (`<commune>:<dossier>`, state JSON), or a tombstone (None) when the dossier left."""


def key_of(commune: str, dossier_code: str) -> bytes:
    return f"{commune}:{dossier_code}".encode()


def micros(at: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding: the index compares at µs resolution)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def index_key(at: datetime, key: bytes) -> bytes:
    return INDEX + micros(at).to_bytes(8, "big") + key


def unreadable_kind(raw: bytes) -> str:
    """What is wrong with a changelog value that is no `TrackedDossier`: a code, never its content."""
    if not raw:
        return "empty"
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not_json"
    return "not_a_state"


class TrackedPartition:
    """The open dossiers of one partition of the tracker's input, with their due-time index."""

    def __init__(self, db: Rdict) -> None:
        self.db = db

    def get(self, key: bytes) -> TrackedDossier | None:
        raw = cast(bytes | None, self.db.get(STATE + key))
        return None if raw is None else TrackedDossier.model_validate_json(raw)

    def record_state(self, latest: TrackedDossier, now: datetime | None = None) -> Change | None:
        """A dossier's new state from notify, or None when it comes from an event older than the state's (stale):
        an unchanged due date keeps its alert flags; a closed dossier is kept until forgotten (`deadlines.wake_at`;
        at once if its state has no event time). `now`: the tracker's clock, against which an event time far in
        the future is not believed (`deadlines.trusted`)."""
        latest = deadlines.trusted(latest, now)
        key = key_of(latest.commune, latest.dossier_code)
        old = self.get(key)
        if old is not None and deadlines.is_stale(latest, old):
            return None
        new = deadlines.merge(old, latest)
        return self._put(key, old, new if new.is_open or new.as_of is not None else None)

    def record_alert(self, alert: DeadlineAlert) -> Change | None:
        """An alert decided elsewhere (an earlier tracker's decision record): the change if not yet marked."""
        key = key_of(alert.commune, alert.dossier_code)
        old = self.get(key)
        if old is None or not old.is_open or (marked := deadlines.mark(old, alert)) == old:
            return None  # a closed dossier (kept a week to order late events) fires nothing
        return self._put(key, old, marked)

    def due(self, now: datetime) -> Iterator[bytes]:
        """Keys of the dossiers whose next alert time is at or before `now`, earliest first."""
        until = micros(now).to_bytes(8, "big")
        for raw in self.db.keys(from_key=INDEX):
            k = cast(bytes, raw)
            if k[:1] != INDEX or k[1:9] > until:
                return
            yield k[9:]

    def fire(self, now: datetime, limit: int | None = None) -> list[tuple[DeadlineAlert | None, Change]]:
        """The alerts due at `now` (at most `limit`), each dossier marked and re-indexed, and the dossiers whose time
        to be forgotten has come (`deadlines.forgotten`: alert None, a tombstone); with their changelog records.

        The caller must send each alert (acknowledged) before its changelog record: a crash in between
        repeats the alert (same id, stopped by notify's ledger) rather than losing it.
        """
        out: list[tuple[DeadlineAlert | None, Change]] = []
        for key in list(self.due(now)):  # listed first: `_put` rewrites the index under the iterator
            d = self.get(key)
            if d is None:  # not reachable while `_put` keeps the index; never fire on it
                continue
            if deadlines.forgotten(d, now):  # closed, or open with nothing left to fire, long past due
                out.append((None, self._put(key, d, None)))
                continue
            for alert in deadlines.alerts_due(d, now):
                out.append((alert, self._put(key, d, deadlines.mark(d, alert))))
            if limit is not None and len(out) >= limit:
                break
        return out

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record to a store being restored: the state only (last record wins), no index.

        A restore writes blind (no read of the old state per record: with a million keys those lookups made it
        2.6x slower, `bench_deadlines`) and builds the index once at the end (`index_all`).
        """
        if value is None:
            del self.db[STATE + key]
        else:
            self.db[STATE + key] = value

    def index_all(self) -> Counter[str]:
        """Write the index entry of every state (after `load`). A state that is no `TrackedDossier` (empty, not JSON,
        another shape: the changelog is ours, but a tool or an older writer can put anything there) is deleted, and
        its kind counted in what is returned: raised, it ended the tracker, and notify with it, at every restore.
        Deleted, its dossier is tracked again from its next state; kept, `get` would raise on it later."""
        unreadable: Counter[str] = Counter()
        for _ in self.indexing(unreadable):
            pass
        return unreadable

    async def index_all_yielding(self, every_s: float = YIELD_EVERY_S) -> Counter[str]:
        """`index_all`, giving the event loop back every `every_s`: about 13 µs a state, so a partition of a
        national tracker (a million and a half states over its partitions) held the loop for seconds, no heartbeat
        sent, and the member was evicted at every restore (audit). The store is nobody else's until it is done."""
        unreadable: Counter[str] = Counter()
        yielded = time.perf_counter()
        for _ in self.indexing(unreadable):
            if time.perf_counter() - yielded >= every_s:
                await asyncio.sleep(0)
                yielded = time.perf_counter()
        return unreadable

    def indexing(self, unreadable: Counter[str]) -> Iterator[None]:
        """`index_all`'s work, a step per state (unreadable ones counted in `unreadable`)."""
        gone: list[bytes] = []
        for raw_key, raw in self.db.items(from_key=STATE):
            yield
            k = cast(bytes, raw_key)
            if k[:1] != STATE:
                break
            try:
                state = TrackedDossier.model_validate_json(cast(bytes, raw))
            except ValueError:  # pydantic's ValidationError
                unreadable[unreadable_kind(cast(bytes, raw))] += 1
                gone.append(k)
                continue
            if (at := deadlines.wake_at(state)) is not None:
                self.db[index_key(at, k[1:])] = b""
        for k in gone:  # after the scan, not under its iterator
            del self.db[k]

    def states(self) -> Iterator[TrackedDossier]:
        for raw_key, raw in self.db.items(from_key=STATE):
            if cast(bytes, raw_key)[:1] != STATE:
                return
            yield TrackedDossier.model_validate_json(cast(bytes, raw))

    def _put(self, key: bytes, old: TrackedDossier | None, new: TrackedDossier | None) -> Change:
        was = None if old is None else deadlines.wake_at(old)
        will = None if new is None else deadlines.wake_at(new)
        if was is not None and was != will:
            del self.db[index_key(was, key)]
        if new is None:
            if old is not None:
                del self.db[STATE + key]
            return key, None
        value = new.model_dump_json().encode()
        self.db[STATE + key] = value
        if will is not None:
            self.db[index_key(will, key)] = b""
        return key, value
