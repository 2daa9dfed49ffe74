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

from rocksdict import Rdict

from services.common.rocks import open_fresh

__all__ = ["as_mapping", "discard", "open_fresh"]

def as_mapping(db: Rdict) -> MutableMapping[bytes, bytes]:
    """The store as `PartitionState` uses it: in raw mode keys and values are bytes, which rocksdict's stubs
    cannot express (they type every key as str | int | float | bytes | bool and every value as Any)."""
    return cast(MutableMapping[bytes, bytes], db)


def discard(db: Rdict, path: Path) -> None:
    db.close()
    shutil.rmtree(path, ignore_errors=True)
