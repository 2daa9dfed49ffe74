"""The keys of a key store on disk that expire (`disk.DiskKeys`), indexed by time in the store itself: forgetting the
expired keys reads only the rows that are due, and memory holds none of them.

Before, the keyring kept a heap in memory of every expiring key, and a store read the whole index back into it at
each start. Dead letters naming an applicant without a permanent key each have such a key for the letter's 31 days:
~335 bytes a letter in intake and in notify, without a cap (soak audit: 500,000 letters +226 MB; a province sending
10 M junk records, ~3.3 GB in each).

A row per key, `EXPIRIES` + its expiry in µs since the epoch (8 bytes, big-endian, so the store's byte order is the
time order) + msgpack (subject, key id), empty, as `services.notify.deadline_index` orders its deadlines. The keyring
names each expiry it learns (a key made here, or its record read: `DiskKeys.expires`); a key that leaves the table
takes its row with it. `due` takes the rows up to now off the index; the keyring forgets each key still there and
due. A row that no longer matches its key (a pending key lost with a restart, an expiry changed by a later record) is
taken when its time comes and changes nothing then.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from rocksdict import Rdict, WriteBatch

from schemas.limits import EARLIEST, LATEST
from services.privacy.disk_rows import EXPIRIES, EXPIRING, Stage, decode, encode, ids_of, scan
from services.privacy.key_tables import _Key

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME = slice(len(EXPIRIES), len(EXPIRIES) + 8)
MOVED_AT_ONCE = 10_000
"""Rows of the index before this one moved in one batch (a store kept by an older reader, opened once)."""


def row(at: datetime, subject: str, key_id: str) -> bytes:
    return EXPIRIES + _micros(at) + encode((subject, key_id))


def _micros(at: datetime) -> bytes:
    """µs since the epoch, exactly (no float rounding), as 8 bytes in their order (every key's is after 1975)."""
    return max((at - EPOCH) // timedelta(microseconds=1), 0).to_bytes(8, "big")


class ExpiryIndex:
    """The index's rows in `db`, changed through `stage` (with the store's other changes, in its next batch)."""

    def __init__(self, db: Rdict, stage: Stage) -> None:
        self._db, self._stage = db, stage

    def add(self, subject: str, key_id: str, at: datetime) -> None:
        self._stage(row(at, subject, key_id), b"")

    def drop(self, subject: str, keys: Iterable[_Key]) -> None:
        """The rows of keys that leave the table (forgotten, erased, expired)."""
        for key in keys:
            if key.expires_at is not None:
                self._stage(row(key.expires_at, subject, key.key_id), None)

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (subject, key id) whose row's time is at or before `now`, earliest first, their rows taken
        off; the rows staged and not yet written are not read (the caller writes them first)."""
        until = _micros(now)
        taken: list[tuple[str, str]] = []
        for key, _ in scan(self._db, EXPIRIES):
            if len(taken) >= limit or key[_TIME] > until:
                break
            self._stage(key, None)
            subject, key_id = decode(key[_TIME.stop:])
            taken.append((subject, key_id))
        return taken


def moved_from_the_old_index(db: Rdict) -> bool:
    """Move the rows of the index by key (`EXPIRING`, a store kept by a reader before this index) to the index by
    time, `MOVED_AT_ONCE` a batch (a kill midway leaves rows in both, each a valid one: the next open goes on).
    False if an expiry there is not an aware time within `schemas.limits` (what `KeyRecord` reads since 2026-12-04;
    a reader before that stored one without an offset, or past 2100): the store is then started over, as before."""
    moved = 0
    while True:
        batch, rows = WriteBatch(raw_mode=True), 0
        for key, value in scan(db, EXPIRING):
            expiry = decode(value)
            if not (isinstance(expiry, datetime) and expiry.tzinfo is not None and EARLIEST <= expiry <= LATEST):
                return False
            batch.put(row(expiry, *ids_of(key)), b"")
            batch.delete(key)
            rows += 1
            if rows == MOVED_AT_ONCE:
                break
        if not rows:
            break
        db.write(batch)
        moved += rows
    if moved:  # the old rows' tombstones out of the files: a later open's look at the old range reads none of them
        db.compact_range(EXPIRING, bytes([EXPIRING[0] + 1]))
    return True
