"""`make bench`: runs every `bench/bench_*.py` module's `main()` in turn, on the local broker."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main() -> None:
    only = set(sys.argv[1:])
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("bench_") and (not only or info.name in only):
            print(f"\n=== {info.name} ===", flush=True)
            importlib.import_module(f"bench.{info.name}").main()


if __name__ == "__main__":
    main()
