"""RocksDB stores (rocksdict) rebuilt from a changelog: the one set of options every stateful service opens with.

The changelog is the source of truth, so a store needs no write-ahead log and is
wiped when its partition is (re)assigned. Memtables are kept small: RocksDB spills
to disk and resident memory stays low however many entries a partition holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rocksdict import Options, Rdict, WriteOptions

WRITE_BUFFER_BYTES = 4 * 1024 * 1024


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
