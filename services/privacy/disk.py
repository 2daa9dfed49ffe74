"""The keyring's keys on disk (ADR 0034): RocksDB, the subjects used last in memory, kept across restarts if asked.

A service's keyring holds every applicant's data key, so it grows with the country: ~460 bytes a key in memory, a
year of new applicants at DOMAIN.md's upper bound (~33 M keys) ~15 GB in each process holding one
(`bench_keyring`). `DiskKeys` keeps them in a RocksDB store instead, with the `PRIVACY_KEYS_CACHED` subjects used
last in memory, unwrapped, and with them what the keyring must remember besides its keys: the erased key ids, the
subjects' erasure marks, the keys it could not read, and an index of the keys that expire.

Two ways to hold the store:
- **A folder of the run** (`DiskKeys(parent)`): made fresh at start, removed at stop, swept by the next process if
  this one is killed (`services.common.run_folder`), as notify's ledger stores; each data key sealed under a key of
  the run that only the process's memory holds, so what is left on disk opens for nobody. The key store reads the
  key topics from the beginning at every start.
- **A folder kept across restarts** (`kept`, when `PRIVACY_STATE_DIR` is set): one per service instance, held by a
  lock while in use (a second process asking for it gets a folder of its run). The key topics' offsets are kept
  with the store, so a start reads only what was written since (`store.KeyStore.start`). Each data key is sealed
  under a key derived from the current KEK (what the key topic's own records need to be opened). The changes of a
  key-store fetch are staged and written in one batch with the key count and the offsets, through RocksDB's
  write-ahead log: a store cut short (SIGKILL, a crash) is a state the keyring had, and applying the records after
  its offsets again changes nothing twice. `store.KeyStore.start` reads it whole again when a full read could give
  another keyring (ADR 0034: other KEKs, topics made again, stale, a record skipped).

A subject with a pending key (made here, its record not read back from the key topic yet) stays in memory until the
record is confirmed: the record goes with every transaction that uses the key, and an eviction must not lose it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, MutableMapping, MutableSet
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from schemas.limits import EARLIEST, LATEST
from services.common import rocks
from services.common.run_folder import RunFolder, remove_orphans
from services.privacy import crypto
from services.privacy.key_records import READER
from services.privacy.key_tables import Remembered, _Key

log = structlog.get_logger("privacy.keys")

PREFIX = "privacy-keys-"
"""A run's folder: `<PREFIX><pid>-<random>`."""
KEPT_PREFIX = "privacy-keystore-"
"""A kept folder: `<KEPT_PREFIX><name>` (not swept: no `PREFIX` match), its lock `<folder>.lock` beside it."""
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
NONCE_BYTES = 12
FORMAT = b"commune-bus keystore 1"
STAGED_MAX = 20_000
"""Writes staged at most before they go to the store without a checkpoint."""

SAVED_EVERY_S = 3600.0
"""How often a kept store that reads nothing new writes again that it is caught up (`KEPT_FOR_S` counts from it)."""
KEPT_FOR_S = 20 * 3600.0
"""A kept store not written for this long is read again from the beginning: the key topic's tombstones are removed
by compaction `delete.retention.ms` (Kafka's default: 24 h) after they are written, and only a subject's mark, not a
key's tombstone, outlives that (review: a key whose maker's clock ran ahead of the mark's margin stayed usable)."""

# record keys in the store: a tag byte, then the rest
KEYS, ERASED, UNREADABLE, MARKS, EXPIRING, OFFSETS, FENCEPOSTS = b"k", b"e", b"u", b"m", b"x", b"o", b"p"
COUNT, FINGERPRINT, SAVED_AT, REREAD = b"!count", b"!fingerprint", b"!saved_at", b"!reread"
REFUSED_BY = b"!refused_by"
"""The `keyring.READER` that refused a key record here (`skipped(refused=True)`): another one reads everything again."""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Kept:
    """What a kept store is tied to: its `name` (namespace and instance), the key its data keys are sealed under,
    and a fingerprint of the KEKs given (a store made under other KEKs starts over)."""

    name: str
    secret: bytes
    fingerprint: bytes

    @classmethod
    def of(cls, name: str, keks: Mapping[str, bytes], kek_id: str) -> Kept:
        secret = HKDF(hashes.SHA256(), 32, salt=None, info=b"commune-bus/keystore/v1").derive(keks[kek_id])
        ids = sorted((kid, hmac.new(kek, b"commune-bus/keystore/fingerprint", "sha256").digest())
                     for kid, kek in keks.items())
        fingerprint = hashlib.sha256(FORMAT + _encode([kek_id, ids])).digest()
        return cls(_NAME.sub("_", name)[:120], secret, fingerprint)


class DiskKeys(Remembered):
    """A `keyring.KeyTable` in RocksDB under `parent` (the system's temporary folder if None), `cached` subjects in
    memory. Not thread-safe, like the keyring."""

    _erased: _Ids
    _unreadable: _Ids
    _marks: _Marks

    def __init__(self, parent: Path | None = None, cached: int = 100_000, *, kept: Kept | None = None) -> None:
        if cached < 1:
            raise ValueError("at least one subject's keys are kept in memory")
        base = Path(tempfile.gettempdir()) if parent is None else parent
        base.mkdir(parents=True, exist_ok=True)
        self._lock: int | None = None
        self._run: RunFolder | None = None
        remove_orphans(base, PREFIX)  # run folders of killed processes (a kept store's user too: review)
        self.kept = kept is not None and self._hold(base / f"{KEPT_PREFIX}{kept.name}")
        try:
            if kept is not None and self.kept:
                self.path = base / f"{KEPT_PREFIX}{kept.name}"
                self._sealer = AESGCM(kept.secret)
                self._db = self._open_kept(kept.fingerprint)
            else:
                if kept is not None:
                    log.warning("privacy.key_store_in_use", effect="another process holds the kept key store: this "
                                "one reads the key topics from the beginning into a folder of its run")
                self._run = RunFolder.claim(base, PREFIX)  # held until `close`: another process's sweep skips it
                self.path = self._run.path / "keys"
                self._db = rocks.open_fresh(self.path, _options())
                self._sealer = AESGCM(AESGCM.generate_key(bit_length=256))  # this run's: in memory only
        except BaseException:  # a store that cannot be opened (disk full, permissions) leaves no folder or lock held
            self._release()
            raise
        self._pinned: dict[str, tuple[_Key, ...]] = {}
        """Subjects with a pending key: never evicted, not on disk until every key of theirs is confirmed."""
        self._cache: OrderedDict[str, tuple[_Key, ...]] = OrderedDict()
        """Confirmed subjects used last, oldest first (the same keys are on disk)."""
        self._cached = cached
        raw = self._db.get(COUNT)
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
        """When offsets were last written (`SAVED_AT`): the store was caught up with them then."""
        self._erased = _Ids(self._db, ERASED, self._stage)
        self._unreadable = _Ids(self._db, UNREADABLE, self._stage)
        self._marks = _Marks(self._db, self._stage)
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
        key = KEYS + subject.encode()
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
        if confirmed or on_disk:  # (not for a new applicant's first key: pending, nothing on disk yet)
            self._unindex(subject, before)
            # on disk, always: a subject pinned for a pending key has its confirmed keys written all the same (review:
            # a key of another worker confirmed meanwhile was in memory only, and the offsets went past its record)
            self._stage(KEYS + subject.encode(), self._stored(subject, confirmed) if confirmed else None)
            for key in confirmed:
                if key.expires_at is not None:
                    self._stage(_key_of(EXPIRING, subject, key.key_id), _encode(key.expires_at))
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
        if on_disk:
            self._unindex(subject, keys)
            self._stage(KEYS + subject.encode(), None)
            self._count -= on_disk
        return keys

    def count(self) -> int:
        """Keys held: on disk, and pending in memory (as a keyring in memory counts them)."""
        return self._count + sum(self._extra.values())

    def expiring(self) -> list[tuple[datetime, str, str]]:
        """The confirmed keys that expire (the keyring's expiry heap, read back at start)."""
        return [(_decode(value), *_ids(key)) for key, value in _scan(self._db, EXPIRING)]

    def offsets(self) -> dict[tuple[str, int], int]:
        """The key topics' offsets this store has applied up to; none (read from the beginning) for a fresh store,
        one not written for `KEPT_FOR_S`, or one that skipped a record it could not read (`skipped`)."""
        if self._db.get(REREAD) is not None:
            log.info("privacy.key_store_read_again", reason="a key record was skipped, unreadable: another chance")
            return {}
        if self._db.get(REFUSED_BY) not in (None, READER):
            log.info("privacy.key_store_read_again", reason="a key record refused by another reader: another chance")
            return {}
        saved = self._db.get(SAVED_AT)
        if saved is not None and time.time() - float(saved) > KEPT_FOR_S:
            log.info("privacy.key_store_read_again", reason="not written for longer than tombstones are kept")
            return {}
        return {_partition(key): int(value) for key, value in _scan(self._db, OFFSETS)}

    def fenceposts(self) -> dict[tuple[str, int], tuple[int, bytes]]:
        return {_partition(key): (int(offset), digest)
                for key, value in _scan(self._db, FENCEPOSTS) for offset, digest in [_decode(value)]}

    def checkpoint(self, offsets: Mapping[tuple[str, int], int],
                   fenceposts: Mapping[tuple[str, int], tuple[int, bytes]] | None = None) -> None:
        """Write what is staged, and that every key-topic record before `offsets` is applied, in one batch."""
        if not self.kept:  # a run's store is read from the beginning anyway
            if self._staged:
                self._flush(None)
            return
        if not self._staged and dict(offsets) == self._offsets and time.time() - self._saved < SAVED_EVERY_S:
            return  # nothing new (the time of being caught up is written again now and then: a quiet week is fine)
        for (topic, partition), post in (fenceposts or {}).items():
            self._staged[FENCEPOSTS + f"{topic}\0{partition}".encode()] = _encode(post)
        self._flush(dict(offsets))

    def skipped(self, refused: bool = False) -> None:
        if self.kept:
            self._stage(*((REFUSED_BY, READER) if refused else (REREAD, b"1")))

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
        for tag in (KEYS, ERASED, UNREADABLE, MARKS, EXPIRING, OFFSETS, FENCEPOSTS):
            batch.delete_range(tag, bytes([tag[0] + 1]))
        batch.delete(REREAD)
        batch.delete(REFUSED_BY)
        batch.delete(SAVED_AT)
        batch.put(COUNT, b"0")
        self._db.write(batch)
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
            self._release()

    def _release(self) -> None:
        """A run's folder removed, and every lock let go."""
        if self._run is not None:
            shutil.rmtree(self._run.path, ignore_errors=True)
            self._run.release()
            self._run = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def in_memory(self) -> int:
        """Subjects whose keys are held in memory now (pending, or among the `cached` used last)."""
        return len(self._pinned) + len(self._cache)

    # --- on disk --------------------------------------------------------------------------------

    def _hold(self, folder: Path) -> bool:
        """Take the kept folder's lock (held until `close`, dropped by the kernel if the process dies)."""
        fd = os.open(folder.with_name(folder.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock = fd
        return True

    def _open_kept(self, fingerprint: bytes) -> Rdict:
        """The kept store, or a fresh one if there is none or it was made under other KEKs (or is unreadable)."""
        db: Rdict | None = None
        try:
            db = Rdict(str(self.path), _options())  # with its write-ahead log (see below)
            stored = db.get(FINGERPRINT)
            if stored == fingerprint and _expiries_sound(db):
                log.info("privacy.key_store_kept", keys=int(db.get(COUNT) or b"0"))
                return db
            reason = ("new" if stored is None else "other KEKs" if stored != fingerprint
                      else "an expiry out of bounds (kept before 2026-12-04)")
        except Exception as exc:  # a damaged store is rebuilt from the topics, never trusted
            reason = f"unreadable ({type(exc).__name__})"
            log.warning("privacy.key_store_unreadable", error=type(exc).__name__, effect="started over")
        if db is not None:
            db.close()
        log.info("privacy.key_store_started_over", reason=reason)
        db = rocks.open_fresh(self.path, _options())
        # a kept store writes its log (one append a batch, not synced): without it a SIGKILL lost every write since the
        # last memtable flush, a few MB, so a worker killed within minutes of its start kept nothing; with it a kill
        # keeps every batch written, and a machine's crash the batches up to some point (RocksDB's recovery)
        db.set_write_options(WriteOptions())
        db.put(FINGERPRINT, fingerprint)
        return db

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
        batch.put(COUNT, str(self._count).encode())
        if offsets is not None:
            for (topic, partition), offset in offsets.items():
                batch.put(OFFSETS + f"{topic}\0{partition}".encode(), str(offset).encode())
            self._saved = time.time()
            batch.put(SAVED_AT, repr(self._saved).encode())
            self._offsets = offsets
        self._db.write(batch)
        self._staged.clear()
        for subject in self._shredded:  # an erased key's old copies out of the files now, not at some compaction
            row = KEYS + subject.encode()
            self._db.compact_range(row, row + b"\0")
        self._shredded.clear()

    def _unindex(self, subject: str, keys: tuple[_Key, ...]) -> None:
        for key in keys:
            if key.expires_at is not None:
                self._stage(_key_of(EXPIRING, subject, key.key_id), None)

    def _remember(self, subject: str, keys: tuple[_Key, ...]) -> None:
        self._cache[subject] = keys
        self._cache.move_to_end(subject)
        while len(self._cache) > self._cached:
            self._forget_cached(next(iter(self._cache)))

    def _forget_cached(self, subject: str) -> None:
        for key in self._cache.pop(subject):  # out of memory with the table's reference: read from disk on next use
            key.aead, key.dek = None, b""

    def _stored(self, subject: str, keys: tuple[_Key, ...]) -> bytes:
        return _encode([(k.key_id, k.created_at, k.expires_at, k.digest, self._seal(subject, k.key_id, k.dek))
                        for k in keys])

    def _loaded(self, subject: str, raw: bytes) -> tuple[_Key, ...]:
        return tuple(_Key(key_id, self._open(subject, key_id, sealed), created_at, expires_at, digest=digest)
                     for key_id, created_at, expires_at, digest, sealed in _decode(raw))

    def _seal(self, subject: str, key_id: str, dek: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)  # random: a kept store's key outlives the run, a counter would repeat
        return nonce + self._sealer.encrypt(nonce, dek, crypto.wrap_aad(subject, key_id))

    def _open(self, subject: str, key_id: str, sealed: bytes) -> bytes:
        return self._sealer.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], crypto.wrap_aad(subject, key_id))


def _expiries_sound(db: Rdict) -> bool:
    """Every expiry in the index is an aware time within `schemas.limits` (what `KeyRecord` reads since 2026-12-04). A
    reader before that stored one without an offset (msgpack gives it back as text) or past 2100: met by the keyring's
    aware ones, it raised at every start (audit). The index holds every expiring key's: a few days of dead letters."""
    for _, value in _scan(db, EXPIRING):
        expiry = _decode(value)
        if not (isinstance(expiry, datetime) and expiry.tzinfo is not None and EARLIEST <= expiry <= LATEST):
            return False
    return True


def _options() -> Options:
    options = rocks.options()
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    table.set_bloom_filter(10, False)  # most lookups are of new applicants: absent, answered by the filter
    table.set_cache_index_and_filter_blocks(True)
    options.set_block_based_table_factory(table)
    return options


def _partition(key: bytes) -> tuple[str, int]:
    topic, _, partition = key[1:].decode().rpartition("\0")
    return topic, int(partition)


def _key_of(tag: bytes, subject: str, key_id: str) -> bytes:
    return tag + _encode((subject, key_id))  # any text in either (a record key read from the topic is any text)


def _ids(key: bytes) -> tuple[str, str]:
    subject, key_id = _decode(key[1:])
    return subject, key_id


def _scan(db: Rdict, tag: bytes) -> Iterator[tuple[bytes, bytes]]:
    for key, value in db.items(from_key=tag):
        assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
        if not key.startswith(tag):
            return
        yield key, value


Stage = Callable[[bytes, bytes | None], None]


class _Ids(MutableSet[tuple[str, str]]):
    """(subject, key id) pairs, in memory and staged for the store under `tag` (erased, unreadable keys: few, read
    back whole at start)."""

    def __init__(self, db: Rdict, tag: bytes, stage: Stage) -> None:
        self._stage, self._tag = stage, tag
        self._ids = {_ids(key) for key, _ in _scan(db, tag)}

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, value: tuple[str, str]) -> None:
        if value not in self._ids:
            self._ids.add(value)
            self._stage(_key_of(self._tag, *value), b"")

    def discard(self, value: tuple[str, str]) -> None:
        if value in self._ids:
            self._ids.discard(value)
            self._stage(_key_of(self._tag, *value), None)

    def forget_all(self) -> None:
        self._ids.clear()


class _Marks(MutableMapping[str, datetime]):
    """Each erased subject's latest mark, in memory and staged for the store."""

    def __init__(self, db: Rdict, stage: Stage) -> None:
        self._stage = stage
        self._marks: dict[str, datetime] = {key[1:].decode(): _decode(value) for key, value in _scan(db, MARKS)}

    def __getitem__(self, subject: str) -> datetime:
        return self._marks[subject]

    def __setitem__(self, subject: str, value: datetime) -> None:
        self._marks[subject] = value
        self._stage(MARKS + subject.encode(), _encode(value))

    def __delitem__(self, subject: str) -> None:
        del self._marks[subject]
        self._stage(MARKS + subject.encode(), None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

    def forget_all(self) -> None:
        self._marks.clear()

