"""The keyring's keys on disk (ADR 0034): RocksDB in the process's own folder, the subjects used last in memory.

A service's keyring holds every applicant's data key, so it grows with the country: ~460 bytes a key in memory, a
year of new applicants at DOMAIN.md's upper bound (~33 M keys) ~15 GB in each process holding one
(`bench_keyring`). `DiskKeys` keeps them in a RocksDB store instead, with the `PRIVACY_KEYS_CACHED` subjects used
last in memory, unwrapped. Like every other store here it is rebuilt from its topics at each start (the key topics
are the truth), in a folder of the process's own (`services.common.run_folder`: one left by a killed process is
swept by the next to start), without a write-ahead log.

On disk each data key is sealed (AES-GCM, bound to its subject and key id) under a key of this run that lives only
in the process's memory: a folder left behind, and the pages RocksDB has not compacted since a key was erased, hold
nothing anyone can open. A subject with a pending key (made here, its record not read back from the key topic yet)
stays in memory until the record is confirmed: the record goes with every transaction that uses the key, and an
eviction must not lose it.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rocksdict import BlockBasedOptions, Cache

from services.common import rocks
from services.common.run_folder import RunFolder, remove_orphans
from services.privacy import crypto
from services.privacy.keyring import _Key

PREFIX = "privacy-keys-"
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
NONCE_BYTES = 12

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class DiskKeys:
    """A `keyring.KeyTable` in RocksDB under `parent` (the system's temporary folder if None), `cached` subjects in
    memory. Not thread-safe, like the keyring."""

    def __init__(self, parent: Path | None = None, cached: int = 100_000) -> None:
        if cached < 1:
            raise ValueError("at least one subject's keys are kept in memory")
        base = Path(tempfile.gettempdir()) if parent is None else parent
        base.mkdir(parents=True, exist_ok=True)
        remove_orphans(base, PREFIX)
        self._run = RunFolder.claim(base, PREFIX)  # held until `close`: another process's sweep skips it
        options = rocks.options()
        table = BlockBasedOptions()
        table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        table.set_bloom_filter(10, False)  # most lookups are of new applicants: absent, answered by the filter
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
        self._db = rocks.open_fresh(self._run.path / "keys", options)
        self._sealer = AESGCM(AESGCM.generate_key(bit_length=256))
        """This run's key for the data keys on disk: in memory only, gone with the process."""
        self._pinned: dict[str, tuple[_Key, ...]] = {}
        """Subjects with a pending key: never evicted, not on disk until every key of theirs is confirmed."""
        self._cache: OrderedDict[str, tuple[_Key, ...]] = OrderedDict()
        """Confirmed subjects used last, oldest first (the same keys are on disk)."""
        self._cached = cached
        self._count = 0
        self._absent: str | None = None
        """The subject the last `get` found nowhere: a `put` of it right after (a new applicant's key, intake's hot
        path) adds keys without reading the store a second time."""
        self._nonces = itertools.count()
        """Nonces of this run's key: a counter never repeats under it (the key is new with each run)."""
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
        raw = self._db.get(subject.encode())
        if raw is None:
            self._absent = subject
            return None
        keys = self._loaded(subject, raw)
        self._remember(subject, keys)
        return keys

    def put(self, subject: str, keys: tuple[_Key, ...]) -> None:
        self._count += len(keys) - (0 if subject == self._absent else len(self.get(subject) or ()))
        self._absent = None
        if any(key.record is not None for key in keys):
            self._cache.pop(subject, None)
            self._pinned[subject] = keys
            return
        self._pinned.pop(subject, None)
        self._db.put(subject.encode(), self._stored(subject, keys))
        self._remember(subject, keys)

    def pop(self, subject: str) -> tuple[_Key, ...]:
        keys = self.get(subject) or ()
        self._pinned.pop(subject, None)
        self._cache.pop(subject, None)
        self._db.delete(subject.encode())
        self._count -= len(keys)
        return keys

    def count(self) -> int:
        return self._count

    def close(self) -> None:
        """Remove the store and its folder (the keys in memory are dropped with the table)."""
        if self._closed:
            return
        self._closed = True
        self._pinned.clear()
        self._cache.clear()
        try:
            self._db.close()
        finally:
            shutil.rmtree(self._run.path, ignore_errors=True)
            self._run.release()

    def in_memory(self) -> int:
        """Subjects whose keys are held in memory now (pending, or among the `cached` used last)."""
        return len(self._pinned) + len(self._cache)

    # --- on disk --------------------------------------------------------------------------------

    def _remember(self, subject: str, keys: tuple[_Key, ...]) -> None:
        self._cache[subject] = keys
        self._cache.move_to_end(subject)
        while len(self._cache) > self._cached:
            _, evicted = self._cache.popitem(last=False)
            for key in evicted:  # out of memory with the table's reference: a later use reads it from disk again
                key.aead, key.dek = None, b""

    def _stored(self, subject: str, keys: tuple[_Key, ...]) -> bytes:
        return _encode([(k.key_id, k.created_at, k.expires_at, k.digest, self._seal(subject, k.key_id, k.dek))
                        for k in keys])

    def _loaded(self, subject: str, raw: bytes) -> tuple[_Key, ...]:
        return tuple(_Key(key_id, self._open(subject, key_id, sealed), created_at, expires_at, digest=digest)
                     for key_id, created_at, expires_at, digest, sealed in _decode(raw))

    def _seal(self, subject: str, key_id: str, dek: bytes) -> bytes:
        nonce = next(self._nonces).to_bytes(NONCE_BYTES, "big")
        return nonce + self._sealer.encrypt(nonce, dek, crypto.wrap_aad(subject, key_id))

    def _open(self, subject: str, key_id: str, sealed: bytes) -> bytes:
        return self._sealer.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], crypto.wrap_aad(subject, key_id))
