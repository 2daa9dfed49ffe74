"""A store's disk failing (full, unwritable, a damaged file): told apart from a record's bug, and marked.

Apart from `rocks` so that a process opening no store (the gateway) does not load RocksDB for it: importing rocksdict
costs ~7 MB of resident memory, which took the gateway's from 91 to 98 MB of the 100 MB its 1 GiB body test allows.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from services.common.logging import SafeMessage, store_fault


class StoreFault(SafeMessage):
    """A store's disk failed it (full, unwritable, a damaged file): no record's bug, so never dead-lettered as one.
    Raised out of the catch-alls that keep one record from stopping a partition (before, with the disk full every
    record after was dead-lettered `internal_error`, its offset committed: metrics counted none of them), it ends the
    process (exit 1) with the file and the cause (`logging.store_fault`), as other faults no restart mends."""


def raise_if_fault(exc: BaseException) -> None:
    """Raise `StoreFault` from `exc` if `exc` is a store's disk fault; else return (the caller's catch-all goes on)."""
    if (fault := store_fault(exc)) is not None:
        raise _failed(*fault) from exc


def _failed(file: str, reason: str) -> StoreFault:
    return StoreFault(f"store failed: {reason} ({file})")


REFUSED = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO)
"""A disk that refuses a store (full, over quota, a file past its size limit, not writable, failing): the store is
as it was, unlike one with files missing or damaged ("No such file or directory", "Corruption: ...")."""
REFUSALS = tuple(f"IO error: {os.strerror(n)}" for n in REFUSED)
"""How RocksDB (and `logging.store_fault`) says them."""


def refusal(exc: BaseException) -> StoreFault | None:
    """The `StoreFault` to raise from `exc` if the disk refused the store (`REFUSED`: RocksDB's or rocksdict's error,
    or Python's `OSError` about one of the store's files), else None: a store that could not be opened for that must
    not be taken for unreadable and started over (a kept store's open writes a new manifest, and replays its log into
    a new file: megabytes after a kill, where a fresh store needs kilobytes)."""
    if isinstance(exc, OSError):
        if exc.errno not in REFUSED:
            return None
        named = os.fsdecode(exc.filename) if exc.filename is not None else "?"  # a state folder's file, no input's
        return _failed(named, f"IO error: {os.strerror(exc.errno)}")
    fault = store_fault(exc)
    return _failed(*fault) if fault is not None and fault[1] in REFUSALS else None


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
