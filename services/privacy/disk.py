"""The keyring's keys on disk (ADR 0034): RocksDB, the subjects used last in memory, kept across restarts if asked.

A service's keyring holds every applicant's data key, so it grows with the country: ~460 bytes a key in memory, a
year of new applicants at DOMAIN.md's upper bound (~33 M keys) ~15 GB in each process holding one
(`bench_keyring`). `DiskKeys` keeps them in a RocksDB store instead, with the `PRIVACY_KEYS_CACHED` subjects used
last in memory, unwrapped, and with them what the keyring must remember besides its keys: the erased key ids, the
subjects' erasure marks, the keys it could not read, and an index by time of the keys that expire (`disk_expiry`).

The store lives in a folder of the run or in one kept across restarts (`disk_folder`: where, held by whom, its data
keys sealed under what), in rows laid out by `disk_rows`. In a kept store the changes of a key-store fetch are staged
and written in one batch with the key count and the offsets, through RocksDB's write-ahead log: a store cut short
(SIGKILL, a crash) is a state the keyring had, and applying the records after its offsets again changes nothing
twice. `store.KeyStore.start` reads it whole again when a full read could give another keyring (ADR 0034: other
KEKs, topics made again, stale, a record skipped).

A subject with a pending key (made here, its record not read back from the key topic yet) stays in memory until the
record is confirmed: the record goes with every transaction that uses the key, and an eviction must not lose it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import structlog
from rocksdict import WriteBatch

from services.privacy import disk_rows as rows
from services.privacy.disk_expiry import ExpiryIndex
from services.privacy.disk_folder import Kept, StoreFolder
from services.privacy.key_records import READER
from services.privacy.key_tables import Remembered, _Key

log = structlog.get_logger("privacy.keys")

STAGED_MAX = 20_000
"""Writes staged at most before they go to the store without a checkpoint."""

SAVED_EVERY_S = 3600.0
"""How often a kept store that reads nothing new writes again that it is caught up (`KEPT_FOR_S` counts from it)."""
KEPT_FOR_S = 20 * 3600.0
"""A kept store not written for this long is read again from the beginning: the key topic's tombstones are removed
by compaction `delete.retention.ms` (Kafka's default: 24 h) after they are written, and only a subject's mark, not a
key's tombstone, outlives that (review: a key whose maker's clock ran ahead of the mark's margin stayed usable)."""
SAVED_AHEAD_S = 60.0
"""A kept store whose time of being caught up lies further ahead of the clock than this was saved under a clock that
ran fast: how long ago is unknown, so it is read again (clock audit: saved two days fast and stopped 30 h, it passed
for fresh; a clock fast by less than the store's real age cannot be told)."""


class DiskKeys(Remembered):
    """A `key_tables.KeyTable` in RocksDB under `parent` (the system's temporary folder if None), `cached` subjects in
    memory. Not thread-safe, like the keyring."""

    _erased: rows.Ids
    _unreadable: rows.Ids
    _marks: rows.Marks

    def __init__(self, parent: Path | None = None, cached: int = 100_000, *, kept: Kept | None = None) -> None:
        if cached < 1:
            raise ValueError("at least one subject's keys are kept in memory")
        self._folder = StoreFolder(parent, kept)
        self.kept, self.path = self._folder.kept, self._folder.path
        self._db = self._folder.db
        self._pinned: dict[str, tuple[_Key, ...]] = {}
        """Subjects with a pending key: never evicted, not on disk until every key of theirs is confirmed."""
        self._cache: OrderedDict[str, tuple[_Key, ...]] = OrderedDict()
        """Confirmed subjects used last, oldest first (the same keys are on disk)."""
        self._cached = cached
        raw = self._db.get(rows.COUNT)
        self._count = 0 if raw is None else int(raw)
        """Keys on disk (written with every change)."""
        self._extra: dict[str, int] = {}
        """Per pinned subject, how many more keys it has in memory than on disk (its pending ones)."""
        self._absent: str | None = None
        """The subject the last `get` found nowhere: a `put` of it right after (a new applicant's key, intake's hot
        path) adds keys without reading the store a second time."""
        self._staged: dict[bytes, bytes | None] = {}
        """Writes not in the store yet (None: a deletion), written together at the next `checkpoint` (with the
        offsets they bring the store to) or once `STAGED_MAX` wait: one batch, not one per key."""
        self._offsets: dict[tuple[str, int], int] | None = None
        """The offsets written last (a checkpoint with the same ones and nothing staged writes nothing)."""
        self._shredded: set[str] = set()
        """Subjects that lost a key to an erasure since the last write: their rows' old copies are compacted away."""
        self._saved = 0.0
        """When offsets were last written (`rows.SAVED_AT`): the store was caught up with them then."""
        self._erased = rows.Ids(self._db, rows.ERASED, self._stage)
        self._unreadable = rows.Ids(self._db, rows.UNREADABLE, self._stage)
        self._marks = rows.Marks(self._db, self._stage)
        self._expiry = ExpiryIndex(self._db, self._stage)
        self._closed = False

    # --- KeyTable -------------------------------------------------------------------------------

    def get(self, subject: str) -> tuple[_Key, ...] | None:
        keys = self._pinned.get(subject)
        if keys is not None:
            return keys
        keys = self._cache.get(subject)
        if keys is not None:
            self._cache.move_to_end(subject)
            return keys
        key = rows.KEYS + subject.encode()
        raw = self._staged[key] if key in self._staged else self._db.get(key)
        if raw is None:
            self._absent = subject
            return None
        keys = self._loaded(subject, raw)
        self._remember(subject, keys)
        return keys

    def put(self, subject: str, keys: tuple[_Key, ...]) -> None:
        self._room()
        before = () if subject == self._absent else self.get(subject) or ()  # pinned: a superset of its disk keys
        self._absent = None
        on_disk = len(before) - self._extra.pop(subject, 0)
        confirmed = tuple(key for key in keys if key.record is None)
        if before:  # the index rows of the keys that leave
            staying = {key.key_id for key in keys}
            self._expiry.drop(subject, [key for key in before if key.key_id not in staying])
        if confirmed or on_disk:  # (not for a new applicant's first key: pending, nothing on disk yet)
            # on disk, always: a subject pinned for a pending key has its confirmed keys written all the same (review:
            # a key of another worker confirmed meanwhile was in memory only, and the offsets went past its record)
            self._stage(rows.KEYS + subject.encode(), self._stored(subject, confirmed) if confirmed else None)
            self._count += len(confirmed) - on_disk
        if len(confirmed) < len(keys):  # pending keys: in memory until confirmed, never evicted
            self._extra[subject] = len(keys) - len(confirmed)
            self._cache.pop(subject, None)
            self._pinned[subject] = keys
            return
        self._pinned.pop(subject, None)
        self._remember(subject, keys)

    def pop(self, subject: str) -> tuple[_Key, ...]:
        self._room()
        keys = self.get(subject) or ()
        on_disk = len(keys) - self._extra.pop(subject, 0)
        self._pinned.pop(subject, None)
        self._cache.pop(subject, None)
        self._expiry.drop(subject, keys)
        if on_disk:
            self._stage(rows.KEYS + subject.encode(), None)
            self._count -= on_disk
        return keys

    def count(self) -> int:
        """Keys held: on disk, and pending in memory (as a keyring in memory counts them)."""
        return self._count + sum(self._extra.values())

    def expires(self, subject: str, key_id: str, at: datetime) -> None:
        self._expiry.add(subject, key_id, at)  # a pending key's too: its row is on disk, the key in memory

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        if self._staged:  # the rows staged since the last batch are read with the others
            self._flush(None)
        return self._expiry.due(now, limit)

    def offsets(self) -> dict[tuple[str, int], int]:
        """The key topics' offsets this store has applied up to; none (read from the beginning) for a fresh store,
        one not written for `KEPT_FOR_S`, or one that skipped a record it could not read (`skipped`)."""
        if self._db.get(rows.REREAD) is not None:
            log.info("privacy.key_store_read_again", reason="a key record was skipped, unreadable: another chance")
            return {}
        if self._db.get(rows.REFUSED_BY) not in (None, READER):
            log.info("privacy.key_store_read_again", reason="a key record refused by another reader: another chance")
            return {}
        saved = self._db.get(rows.SAVED_AT)
        if saved is not None and not -SAVED_AHEAD_S <= time.time() - float(saved) <= KEPT_FOR_S:
            log.info("privacy.key_store_read_again", reason="not written for longer than tombstones are kept, or "
                     "written under a clock that ran ahead")
            return {}
        return {rows.partition_of(key): int(value) for key, value in rows.scan(self._db, rows.OFFSETS)}

    def fenceposts(self) -> dict[tuple[str, int], tuple[int, bytes]]:
        return {rows.partition_of(key): (int(offset), digest)
                for key, value in rows.scan(self._db, rows.FENCEPOSTS) for offset, digest in [rows.decode(value)]}

    def checkpoint(self, offsets: Mapping[tuple[str, int], int],
                   fenceposts: Mapping[tuple[str, int], tuple[int, bytes]] | None = None) -> None:
        """Write what is staged, and that every key-topic record before `offsets` is applied, in one batch."""
        if not self.kept:  # a run's store is read from the beginning anyway
            if self._staged:
                self._flush(None)
            return
        if not self._staged and dict(offsets) == self._offsets and 0 <= time.time() - self._saved < SAVED_EVERY_S:
            return  # nothing new (the time of being caught up is written again now and then: a quiet week is fine;
            # at once after the clock stepped back, so it never lies ahead of the clock)
        for (topic, partition), post in (fenceposts or {}).items():
            self._staged[rows.FENCEPOSTS + f"{topic}\0{partition}".encode()] = rows.encode(post)
        self._flush(dict(offsets))

    def skipped(self, refused: bool = False) -> None:
        if self.kept:
            self._stage(*((rows.REFUSED_BY, READER) if refused else (rows.REREAD, b"1")))

    def shred(self, subject: str) -> None:
        if self.kept:  # a run's store is sealed under a key gone with the run
            self._shredded.add(subject)

    def clear(self) -> None:
        """Start over, empty (the key topics are read from the beginning again)."""
        for subject in list(self._cache):
            self._forget_cached(subject)
        self._pinned.clear()  # (called before any key is made: the key store's start)
        self._extra.clear()
        self._staged.clear()
        batch = WriteBatch(raw_mode=True)
        for tag in (rows.KEYS, rows.ERASED, rows.UNREADABLE, rows.MARKS, rows.EXPIRING, rows.EXPIRIES, rows.OFFSETS,
                    rows.FENCEPOSTS):
            batch.delete_range(tag, bytes([tag[0] + 1]))
        batch.delete(rows.REREAD)
        batch.delete(rows.REFUSED_BY)
        batch.delete(rows.SAVED_AT)
        batch.put(rows.COUNT, b"0")
        self._db.write(batch)
        self._db.compact_range(None, None)  # the old rows out of the files now: an erased key's among them, which the
        # full read may never meet again (its tombstone compacted away, its mark finding no key left to shred)
        self._count, self._absent, self._offsets, self._saved = 0, None, None, 0.0
        self._shredded.clear()
        for loaded in (self._erased, self._unreadable, self._marks):
            loaded.forget_all()

    def close(self) -> None:
        """A run's store is removed with its folder; a kept one is flushed and its lock let go."""
        if self._closed:
            return
        self._closed = True
        self._pinned.clear()
        self._cache.clear()
        try:
            if self.kept:
                self._flush(None)  # what is staged: the records after the offsets apply again without effect
                self._db.flush()
            self._db.close()
        finally:
            self._folder.release()

    def in_memory(self) -> int:
        """Subjects whose keys are held in memory now (pending, or among the `cached` used last)."""
        return len(self._pinned) + len(self._cache)

    # --- on disk --------------------------------------------------------------------------------

    def _stage(self, key: bytes, value: bytes | None) -> None:
        self._staged[key] = value

    def _room(self) -> None:
        """Before a change, never inside one: what is staged goes to the store once `STAGED_MAX` wait (a caller that
        never checkpoints, a bench or a test: bounded all the same), as a state the keyring had."""
        if len(self._staged) >= STAGED_MAX:
            self._flush(None)

    def _flush(self, offsets: dict[tuple[str, int], int] | None) -> None:
        """Everything staged, the key count (exact in whatever state a kill leaves: it goes with the changes) and
        `offsets` if given (after the changes they cover), in one batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in self._staged.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(rows.COUNT, str(self._count).encode())
        if offsets is not None:
            for (topic, partition), offset in offsets.items():
                batch.put(rows.OFFSETS + f"{topic}\0{partition}".encode(), str(offset).encode())
            self._saved = time.time()
            batch.put(rows.SAVED_AT, repr(self._saved).encode())
            self._offsets = offsets
        self._db.write(batch)
        self._staged.clear()
        for subject in self._shredded:  # an erased key's old copies out of the files now, not at some compaction
            row = rows.KEYS + subject.encode()
            self._db.compact_range(row, row + b"\0")
        self._shredded.clear()

    def _remember(self, subject: str, keys: tuple[_Key, ...]) -> None:
        self._cache[subject] = keys
        self._cache.move_to_end(subject)
        while len(self._cache) > self._cached:
            self._forget_cached(next(iter(self._cache)))

    def _forget_cached(self, subject: str) -> None:
        for key in self._cache.pop(subject):  # out of memory with the table's reference: read from disk on next use
            key.aead, key.dek = None, b""

    def _stored(self, subject: str, keys: tuple[_Key, ...]) -> bytes:
        return rows.encode([(k.key_id, k.created_at, k.expires_at, k.digest,
                             self._folder.seal_key(subject, k.key_id, k.dek)) for k in keys])

    def _loaded(self, subject: str, raw: bytes) -> tuple[_Key, ...]:
        return tuple(_Key(key_id, self._folder.open_key(subject, key_id, sealed), created_at, expires_at, digest=digest)
                     for key_id, created_at, expires_at, digest, sealed in rows.decode(raw))

