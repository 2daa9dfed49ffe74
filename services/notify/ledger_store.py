"""RocksDB (rocksdict) behind the ledger's `KV`: one store per held ledger partition, under one folder per run.

The ledger topic is the source of truth, so a store needs no write-ahead log: it is created empty when its
partition is taken on, filled from the topic, and deleted when the partition is let go or the run ends.
Memtables and the block cache are kept small and bloom filters make the per-notification "done?" lookup
of an absent id cheap: resident memory stays low however many ids a partition holds (RocksDB keeps them on
disk).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from rocksdict import BlockBasedOptions, Cache

from services.common import rocks
from services.common.run_folder import RunFolder, remove_orphans
from services.notify.ledger_state import KV

PREFIX = "notify-ledger-"
BLOCK_CACHE_BYTES = 8 * 1024 * 1024


class RocksKV:
    """One partition's store; keys and values are bytes (raw mode)."""

    def __init__(self, path: Path, cache: Cache) -> None:
        self.path = path
        options = rocks.options()
        table = BlockBasedOptions()
        table.set_block_cache(cache)
        table.set_bloom_filter(10, False)
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
        self.db = rocks.open_fresh(path, options)
        # bound methods of the store itself: these run per ledger record, a wrapper's call would double their cost
        self.get: Callable[[bytes], bytes | None] = self.db.get
        self.put: Callable[[bytes, bytes], None] = self.db.put
        self.delete: Callable[[bytes], None] = self.db.delete

    def scan(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        return cast(Iterator[tuple[bytes, bytes]], iter(self.db.items(from_key=start)))

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)


class RocksStores:
    """Opens and discards the partition stores of one run, in a fresh folder under `parent` (the system's
    temporary folder if None); `close` removes them all. One block cache is shared by every partition.
    A folder left by a process that is gone (killed, so `close` never ran) is removed on the way in
    (`services.common.run_folder`: its lock is free)."""

    def __init__(self, parent: Path | None = None) -> None:
        base = Path(tempfile.gettempdir()) if parent is None else parent
        base.mkdir(parents=True, exist_ok=True)
        remove_orphans(base, PREFIX)
        self.run = RunFolder.claim(base, PREFIX)  # held until `close`: another process's sweep skips it
        self.root = self.run.path
        self.cache = Cache(BLOCK_CACHE_BYTES)
        self._open: dict[int, RocksKV] = {}

    def open(self, partition: int) -> KV:
        self.discard(partition)
        kv = self._open[partition] = RocksKV(self.root / f"p{partition}", self.cache)
        return kv

    def discard(self, partition: int) -> None:
        kv = self._open.pop(partition, None)
        if kv is not None:
            kv.close()

    def close(self) -> None:
        try:
            for partition in list(self._open):
                self.discard(partition)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.run.release()
