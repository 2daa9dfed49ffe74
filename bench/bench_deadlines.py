"""Deadline tracker benchmark (`make bench`, or `python -m bench bench_deadlines`): cost per tick, national scale.

Side by side in one run (pure: the tick's decisions, no broker; the Kafka writes per alert fired are the same
before and after):
  - today's full scan (`faust` table of JSON states: every tick parses every open dossier and asks
    `alerts_due`), measured over BENCH_DEADLINES_SCAN_OPEN open dossiers (100,000) and extrapolated linearly to
    the index's count (its cost is linear by construction: one parse and one rule call per dossier);
  - the due-time index (`services/notify/deadline_index.py`) over BENCH_DEADLINES_OPEN open dossiers
    (1,000,000) in 6 RocksDB partition stores, filled through the restore path (`TrackedPartition.load`
    of each changelog record, then `index_all`): steady ticks 30 s apart, a burst tick where a whole day's
    due-soon alerts come at once, and the tick after it (the index's deletions are still unflushed).
Also the index's footprint: resident memory grown while filling it, and its files on disk.
Target (issue 13): <= 100 ms per tick with 1 million open dossiers.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rocksdict import Options, Rdict

from schemas.notification import TrackedDossier
from services.common.rocks import WRITE_BUFFER_BYTES, open_fresh
from services.notify import deadlines
from services.notify.deadline_index import TrackedPartition, key_of

OPEN = int(os.environ.get("BENCH_DEADLINES_OPEN", "1000000"))
SCAN_OPEN = int(os.environ.get("BENCH_DEADLINES_SCAN_OPEN", "100000"))
PARTITIONS = 6
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # Tuesday 08:00 Vietnam
DUE_DAYS = 30
"""Due dates spread over the next 30 days: half at 17:00 Vietnam time (a whole day's dossiers due at once), half at
any time of day (a few alerts every tick)."""


def dossiers(n: int, seed: int = 13) -> Iterator[TrackedDossier]:
    rnd = random.Random(seed)
    for i in range(n):
        day = NOW + timedelta(days=rnd.randrange(1, DUE_DAYS))
        due = day.replace(hour=10, minute=0) if i % 2 else day + timedelta(seconds=rnd.randrange(86400))
        yield TrackedDossier(dossier_code=f"HS-{i:07d}", commune=f"{rnd.randrange(1, 3322):05d}", province="08",
                             procedure_code="1.001234", officer_id=f"cb-{i % 9}", due_at=due)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def holder_child(root: str) -> None:
    """In a fresh process: open the filled stores as a tracker holds them, tick 20 times; print RSS before/after."""
    base = rss_mb()
    parts = [TrackedPartition(open_store(Path(root) / f"p{p}")) for p in range(PARTITIONS)]
    for k in range(20):
        index_tick_ms(parts, NOW + timedelta(seconds=30 * k))
    print(f"{base:.1f} {rss_mb():.1f}")


def open_store(path: Path) -> Rdict:
    """An existing store, opened with the tracker's options (`open_fresh` would wipe it)."""
    options = Options(raw_mode=True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    return Rdict(str(path), options)


def full_scan_ms(table: dict[str, str], now: datetime) -> tuple[float, int]:
    """Today's tick (`deadline_worker.tick` before this change), without its sends: parse, ask, collect."""
    t = time.perf_counter()
    fired = [a for raw in table.values() for a in deadlines.alerts_due(TrackedDossier.model_validate_json(raw), now)]
    return (time.perf_counter() - t) * 1000, len(fired)


def index_tick_ms(parts: list[TrackedPartition], now: datetime) -> tuple[float, int]:
    """The new tick's work without its sends: each partition's due entries fired, marked and re-indexed."""
    t = time.perf_counter()
    fired = sum(len(p.fire(now)) for p in parts)
    return (time.perf_counter() - t) * 1000, fired


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "holder":
        holder_child(sys.argv[2])
        return
    root = Path(tempfile.mkdtemp(prefix="bench-deadlines-"))
    try:
        run(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path) -> None:
    print(f"building {OPEN:,} open dossiers (due over the next {DUE_DAYS} days) ...", flush=True)
    before = rss_mb()
    parts = [TrackedPartition(open_fresh(root / f"p{p}")) for p in range(PARTITIONS)]
    restore_s = 0.0
    for i, d in enumerate(dossiers(OPEN)):  # one at a time: only the index is held
        key, value = key_of(d.commune, d.dossier_code), d.model_dump_json().encode()
        t = time.perf_counter()
        parts[i % PARTITIONS].load(key, value)
        restore_s += time.perf_counter() - t
    t = time.perf_counter()
    for p in parts:
        p.index_all()
    restore_s += time.perf_counter() - t
    grown = rss_mb() - before
    for p in parts:
        p.db.flush()

    steady = [index_tick_ms(parts, NOW + timedelta(seconds=30 * k)) for k in range(20)]
    empty_ms = min(ms for ms, _ in steady)
    burst_at = NOW.replace(hour=10, minute=0) + timedelta(seconds=1)  # tomorrow's 17:00 due-soon: today 17:00
    burst_ms, burst_n = index_tick_ms(parts, burst_at)
    after_ms, after_n = index_tick_ms(parts, burst_at + timedelta(seconds=30))
    disk = disk_mb(root)
    for p in parts:
        p.db.close()
    held = subprocess.run([sys.executable, "-m", "bench.bench_deadlines", "holder", str(root)], check=True,
                          capture_output=True, text=True).stdout.split()
    base_mb, held_mb = float(held[0]), float(held[1])

    table = {f"{d.commune}:{d.dossier_code}": d.model_dump_json() for d in dossiers(SCAN_OPEN, seed=14)}
    scans = [full_scan_ms(table, NOW + timedelta(seconds=30 * k)) for k in range(3)]
    scan_ms = min(ms for ms, _ in scans)
    scan_at_open = scan_ms * OPEN / SCAN_OPEN

    steady_ms = sorted(ms for ms, _ in steady)
    print(f"open dossiers in the index                {OPEN:>12,}  ({PARTITIONS} RocksDB partition stores)")
    print(f"restore into the index                   {OPEN / restore_s:>12,.0f} records/s  "
          f"({restore_s * 1e6 / OPEN:,.1f} s per million, Kafka fetch not included)")
    print(f"index tick, steady (20 ticks 30 s apart)  median {steady_ms[len(steady_ms) // 2]:.3f} ms, "
          f"max {steady_ms[-1]:.3f} ms, min {empty_ms:.3f} ms; alerts {sum(n for _, n in steady)}")
    print(f"index tick, burst (a day's due-soon)      {burst_ms:>12,.1f} ms for {burst_n:,} alerts "
          f"({burst_ms * 1000 / max(burst_n, 1):.1f} µs per alert)")
    print(f"index tick right after the burst          {after_ms:>12,.3f} ms ({after_n} alerts)")
    print(f"full scan (today), measured               {scan_ms:>12,.1f} ms at {SCAN_OPEN:,} open dossiers "
          f"({scan_ms * 1000 / SCAN_OPEN:.1f} µs each)")
    print(f"full scan (today), extrapolated           {scan_at_open:>12,.0f} ms at {OPEN:,} (linear)  "
          f"vs the index's steady median: {scan_at_open / max(steady_ms[len(steady_ms) // 2], 1e-6):,.0f}x")
    print(f"index footprint                           {disk:,.0f} MB on disk; RSS +{grown:,.0f} MB while filling; "
          f"a process holding it and ticking: +{held_mb - base_mb:,.0f} MB ({held_mb:,.0f} MB in all)")
    print(f"target <= 100 ms per tick at {OPEN:,}: steady {'met' if steady_ms[-1] <= 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
