"""Where a key store lives (`disk.DiskKeys`, ADR 0034), and the key its data keys are sealed under.

Two ways to hold the store:
- **A folder of the run** (`DiskKeys(parent)`): made fresh at start, removed at stop, swept by the next process if
  this one is killed (`services.common.run_folder`), as notify's ledger stores; each data key sealed under a key of
  the run that only the process's memory holds, so what is left on disk opens for nobody. The key store reads the
  key topics from the beginning at every start.
- **A folder kept across restarts** (`kept`, when `PRIVACY_STATE_DIR` is set): one per service instance, held by a
  lock while in use (a second process asking for it gets a folder of its run). The key topics' offsets are kept
  with the store, so a start reads only what was written since (`store.KeyStore.start`). Each data key is sealed
  under a key derived from the current KEK (what the key topic's own records need to be opened). A kept store that
  must start over (new, other KEKs, unreadable, marked damaged) is replaced only once its successor opens; one the
  disk refuses (full, not writable: `store_faults.REFUSED`) is not started over but left as it was, the start ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteOptions

from services.common import rocks, store_faults
from services.common.logging import error_fields
from services.common.run_folder import RunFolder, remove_orphans
from services.privacy import crypto
from services.privacy.disk_expiry import moved_from_the_old_index
from services.privacy.disk_rows import COUNT, FINGERPRINT, encode

log = structlog.get_logger("privacy.keys")

PREFIX = "privacy-keys-"
"""A run's folder: `<PREFIX><pid>-<random>`."""
KEPT_PREFIX = "privacy-keystore-"
"""A kept folder: `<KEPT_PREFIX><name>` (not swept: no `PREFIX` match), its lock `<folder>.lock` beside it."""
ASIDE, DISCARDED = ".replaced", ".discarded"
"""A kept folder moved aside while its successor opens (`StoreFolder._replaced`), put back at the next start if the
process was killed before the successor opened; then renamed for removal, removed at the next start if left."""
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
NONCE_BYTES = 12
FORMAT = b"commune-bus keystore 1"
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
        fingerprint = hashlib.sha256(FORMAT + encode([kek_id, ids])).digest()
        return cls(_NAME.sub("_", name)[:120], secret, fingerprint)


class StoreFolder:
    """A key store's folder under `parent` (the system's temporary folder if None): the kept one if `kept` is given
    and no other process holds it, else a folder of the run; its store open, and the key its data keys are sealed
    under. Held until `release`."""

    def __init__(self, parent: Path | None, kept: Kept | None) -> None:
        base = Path(tempfile.gettempdir()) if parent is None else parent
        base.mkdir(parents=True, exist_ok=True)
        self._lock: int | None = None
        self._run: RunFolder | None = None
        remove_orphans(base, PREFIX)  # run folders of killed processes (a kept store's user too: review)
        self.kept = kept is not None and self._hold(base / f"{KEPT_PREFIX}{kept.name}")
        try:
            if kept is not None and self.kept:
                self.path = base / f"{KEPT_PREFIX}{kept.name}"
                self.sealer = AESGCM(kept.secret)
                self.db = self._open_kept(kept.fingerprint)
            else:
                if kept is not None:
                    log.warning("privacy.key_store_in_use", effect="another process holds the kept key store: this "
                                "one reads the key topics from the beginning into a folder of its run")
                self._run = RunFolder.claim(base, PREFIX)  # held until `release`: another process's sweep skips it
                self.path = self._run.path / "keys"
                self.db = rocks.open_fresh(self.path, _options())
                self.sealer = AESGCM(AESGCM.generate_key(bit_length=256))  # this run's: in memory only
        except BaseException:  # a store that cannot be opened (disk full, permissions) leaves no folder or lock held
            self.release()
            raise

    def release(self) -> None:
        """A run's folder removed, and every lock let go."""
        if self._run is not None:
            shutil.rmtree(self._run.path, ignore_errors=True)
            self._run.release()
            self._run = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _hold(self, folder: Path) -> bool:
        """Take the kept folder's lock (held until `release`, dropped by the kernel if the process dies)."""
        fd = os.open(folder.with_name(folder.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock = fd
        return True

    def _open_kept(self, fingerprint: bytes) -> Rdict:
        """The kept store, or a fresh one if there is none or it was made under other KEKs (or is unreadable); an index
        of expiries an older reader kept is moved to the one by time first (`disk_expiry`)."""
        db: Rdict | None = None
        self._put_back()  # a start killed before its successor opened: the kept store is judged again, as it was
        shutil.rmtree(self._beside(DISCARDED), ignore_errors=True)  # one killed after: what was left of the old one
        try:
            if (damage := _damage(self.path)) is not None:  # a process found it damaged (`store_faults.mark_damaged`)
                raise _Damaged(damage)
            db = Rdict(str(self.path), _options())  # with its write-ahead log (see below)
            stored = db.get(FINGERPRINT)
            if stored == fingerprint and moved_from_the_old_index(db):
                log.info("privacy.key_store_kept", keys=int(db.get(COUNT) or b"0"))
                return db
            reason = ("new" if stored is None else "other KEKs" if stored != fingerprint
                      else "an expiry out of bounds (kept before 2026-12-04)")
        except Exception as exc:  # a damaged store is rebuilt from the topics, never trusted
            if (refused := store_faults.refusal(exc)) is not None:  # the disk's fault (full, not writable): the store
                if db is not None:  # is as it was, and the start ends (exit 1) naming the file and the cause
                    with contextlib.suppress(Exception):  # (its close fails too, after a refused write)
                        db.close()
                raise refused from exc
            reason = f"unreadable ({exc if isinstance(exc, _Damaged) else type(exc).__name__})"
            log.warning("privacy.key_store_unreadable", folder=str(self.path), **error_fields(exc),
                        effect="starting over")
        if db is not None:
            db.close()
        db = self._replaced()
        log.info("privacy.key_store_started_over", reason=reason)
        # a kept store writes its log (one append a batch, not synced): without it a SIGKILL lost every write since the
        # last memtable flush, a few MB, so a worker killed within minutes of its start kept nothing; with it a kill
        # keeps every batch written, and a machine's crash the batches up to some point (RocksDB's recovery)
        db.set_write_options(WriteOptions())
        db.put(FINGERPRINT, fingerprint)
        return db

    def _replaced(self) -> Rdict:
        """A fresh store in place of the kept one, which is moved aside first and removed only once the fresh one
        opened: one that cannot (a disk full or unwritable, or a kill meanwhile) leaves the kept store as it was
        (before: removed first, so a full disk at a start lost it, and the next start read the key topics whole).
        Once the fresh one opened, the old one is renamed for removal in one step, then removed: a kill during its
        removal never has a half-removed store put back in place of the fresh one."""
        aside = self._beside(ASIDE)
        if self.path.exists():
            os.replace(self.path, aside)  # a rename: it needs no room on the disk
        try:
            db = rocks.open_fresh(self.path, _options())
        except BaseException:
            with contextlib.suppress(OSError):  # the open's error is the one to see
                self._put_back()
            raise
        if aside.exists():
            discarded = self._beside(DISCARDED)
            shutil.rmtree(discarded, ignore_errors=True)
            try:
                os.replace(aside, discarded)
            except OSError as exc:  # a `.discarded` left that cannot be removed: the fresh store is opened all the same
                log.warning("privacy.key_store_not_discarded", **error_fields(exc),
                            effect="the one replaced is put back and judged again at the next start")
                return db
            shutil.rmtree(discarded, ignore_errors=True)
        return db

    def _beside(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _put_back(self) -> None:
        """The kept store moved aside back in its place, if it is there (what stands in its place removed)."""
        if self._beside(ASIDE).exists():
            shutil.rmtree(self.path, ignore_errors=True)
            os.replace(self._beside(ASIDE), self.path)

    def seal_key(self, subject: str, key_id: str, dek: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)  # random: a kept store's key outlives the run, a counter would repeat
        return nonce + self.sealer.encrypt(nonce, dek, crypto.wrap_aad(subject, key_id))

    def open_key(self, subject: str, key_id: str, sealed: bytes) -> bytes:
        return self.sealer.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], crypto.wrap_aad(subject, key_id))


class _Damaged(store_faults.StoreFault):
    """The kept store was found damaged by a process before (its `store_faults.DAMAGED` mark and what it said)."""


def _damage(path: Path) -> str | None:
    try:
        return "found damaged: " + (path / store_faults.DAMAGED).read_text().strip()[:100]
    except FileNotFoundError:
        return None


def _options() -> Options:
    options = rocks.options()
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    table.set_bloom_filter(10, False)  # most lookups are of new applicants: absent, answered by the filter
    table.set_cache_index_and_filter_blocks(True)
    options.set_block_based_table_factory(table)
    return options
