"""`make bench`: runs every `bench/bench_*.py` module's `main()` in turn, on the local broker."""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import bench
from bench import naming
from services.common.admin import delete_topics, list_topics
from services.common.settings import KafkaConnection
from services.privacy import keys as privacy_keys
from services.privacy.settings import PrivacySettings

KAFKA = KafkaConnection()


def main() -> None:
    only = set(sys.argv[1:])
    if not PrivacySettings().configured:  # intake seals personal data: the benchmarks measure it doing so
        os.environ.update(privacy_keys.ensure(Path(".bench") / "keys"))
    before = asyncio.run(list_topics(KAFKA))
    try:
        for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
            if info.name.startswith("bench_") and (not only or info.name in only):
                print(f"\n=== {info.name} ===", flush=True)
                importlib.import_module(f"bench.{info.name}").main()
    finally:  # the benchmarks' own namespaces go: idle partitions pile up and slow the broker for the next run
        created = {t for t in asyncio.run(list_topics(KAFKA)) - before if naming.ours(t)}  # this run's only
        asyncio.run(delete_topics(KAFKA, created))
        print(f"\nremoved {len(created)} benchmark topics", flush=True)


if __name__ == "__main__":
    main()
