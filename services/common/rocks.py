"""RocksDB stores (rocksdict) rebuilt from a changelog: the one set of options every stateful service opens with.

The changelog is the source of truth, so a store needs no write-ahead log and is
wiped when its partition is (re)assigned. Memtables are kept small: RocksDB spills
to disk and resident memory stays low however many entries a partition holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rocksdict import Options, Rdict, WriteOptions

from services.common.logging import SafeMessage, store_fault

WRITE_BUFFER_BYTES = 4 * 1024 * 1024


class StoreFault(SafeMessage):
    """A store's disk failed it (full, unwritable, a damaged file): no record's bug, so never dead-lettered as one.
    Raised out of the catch-alls that keep one record from stopping a partition (before, with the disk full every
    record after was dead-lettered `internal_error`, its offset committed: metrics counted none of them), it ends the
    process (exit 1) with the file and the cause (`logging.store_fault`), as other faults no restart mends."""


def raise_if_fault(exc: BaseException) -> None:
    """Raise `StoreFault` from `exc` if `exc` is a store's disk fault; else return (the caller's catch-all goes on)."""
    if (fault := store_fault(exc)) is not None:
        raise StoreFault("store failed: {1} ({0})".format(*fault)) from exc


DAMAGED = "DAMAGED"
"""A file left in a store's folder by a process that found the store damaged (`mark_damaged`): a store kept across
restarts is started over, never trusted, at its next open (the privacy key store's, ADR 0034)."""


def mark_damaged(exc: BaseException) -> Path | None:
    """The folder of the store `exc` (or what caused it) found damaged, marked `DAMAGED`; None if it is no damage,
    or the mark cannot be written. A block damaged within a file opens without complaint, so a kept store was kept at
    every start and raised at every read of that block (a crash loop, or each record it met dead-lettered)."""
    seen: BaseException | None = exc
    while seen is not None:
        fault = store_fault(seen)
        if fault is not None and fault[1].startswith("Corruption") and fault[0] != "?":
            folder = Path(fault[0]).parent
            try:
                (folder / DAMAGED).write_text(fault[1] + "\n")
            except OSError:
                return None
            return folder
        seen = seen.__cause__
    return None


def options() -> Options:
    """Raw mode (bytes keys and values), created if missing, two small memtables."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_max_write_buffer_number(2)
    return opts


def open_fresh(path: Path, opts: Options | None = None) -> Rdict:
    """An empty store at `path` (anything there before is removed), without a write-ahead log."""
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Rdict(str(path), opts if opts is not None else options())
    write = WriteOptions()
    write.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub calls it a method
    db.set_write_options(write)
    return db
