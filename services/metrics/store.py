"""RocksDB stores (rocksdict), one per owned partition, rebuilt from the changelog on assignment.

The changelog is the source of truth, so the store needs no write-ahead log and
is wiped when a partition is (re)assigned. Memtables are kept small: RocksDB
spills to disk and resident memory stays low however many dossiers are open.
"""

from __future__ import annotations

import shutil
from collections.abc import MutableMapping
from pathlib import Path
from typing import cast

from rocksdict import Options, Rdict, WriteOptions

WRITE_BUFFER_BYTES = 4 * 1024 * 1024


def open_fresh(path: Path) -> Rdict:
    """An empty store at `path` (anything there before is removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    db = Rdict(str(path), options)
    write = WriteOptions()
    write.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub calls it a method
    db.set_write_options(write)
    return db


def as_mapping(db: Rdict) -> MutableMapping[bytes, bytes]:
    """The store as `PartitionState` uses it: in raw mode keys and values are bytes, which rocksdict's stubs
    cannot express (they type every key as str | int | float | bytes | bool and every value as Any)."""
    return cast(MutableMapping[bytes, bytes], db)


def discard(db: Rdict, path: Path) -> None:
    db.close()
    shutil.rmtree(path, ignore_errors=True)
