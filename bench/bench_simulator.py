"""Simulator throughput, side by side in one run: can it feed intake faster than any demo or load test needs?

(a) pure generator, all families, valid only        (records/s, one core)
(b) pure generator, all families, 5% bad records
(c) pure generator, dossiers only (what bench_intake uses)
(d) generator + aiokafka shell, unthrottled, to the real broker (records/s acknowledged)
Also: peak Python heap of generating BENCH_SIM_RECORDS records as a list (tracemalloc).
Size: BENCH_SIM_RECORDS (default 50,000).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import tracemalloc
import uuid

from schemas.events import Family
from services.simulator.generate import DEFAULT_NOW, TrafficConfig, generate, traffic
from services.simulator.producer import run
from services.simulator.settings import SimulatorSettings

N = int(os.environ.get("BENCH_SIM_RECORDS", "50000"))


def pure(label: str, config: TrafficConfig) -> None:
    started = time.perf_counter()
    size = sum(len(e.record.value) for e in itertools.islice(traffic(1, DEFAULT_NOW, config), N))
    elapsed = time.perf_counter() - started
    print(f"{label:<48} {N / elapsed:>10,.0f} records/s   {size / N:>6,.0f} B/record")


def memory() -> None:
    tracemalloc.start()
    records = generate(N, seed=1, invalid_share=0.05)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{'generate(N) peak Python heap':<48} {peak / 2**20:>10,.1f} MiB for {len(records):,} records")


def shell() -> None:
    seconds = max(3.0, N / 20_000)
    settings = SimulatorSettings(
        namespace=f"bench-sim-{uuid.uuid4().hex[:8]}", rate=1e9, duration=seconds, seed=1,  # Kafka from KAFKA_*
        invalid_share=0.05, progress_every=3600, day_seconds=500 / 1e9,  # keep 500 records per simulated day
    )
    started = time.perf_counter()
    progress = asyncio.run(run(settings, asyncio.Event()))
    elapsed = time.perf_counter() - started
    print(f"{'(d) generator + aiokafka shell, unthrottled':<48} {progress.total / elapsed:>10,.0f} records/s "
          f"acknowledged ({progress.total:,} in {elapsed:.1f} s incl. start-up)")


def main() -> None:
    print(f"records per variant: {N:,}")
    pure("(a) pure generator, all families, valid", TrafficConfig())
    pure("(b) pure generator, all families, 5% bad", TrafficConfig(invalid_share=0.05))
    pure("(c) pure generator, dossiers only, 5% bad", TrafficConfig(invalid_share=0.05, families=(Family.DOSSIER,)))
    memory()
    shell()


if __name__ == "__main__":
    main()
