"""Simulator throughput, side by side in one run: can it feed intake faster than any demo or load test needs?

(a) pure generator, all families, valid only        (records/s, one core)
(b) pure generator, all families, 5% bad records
(c) pure generator, dossiers only (what bench_intake uses)
(d) generator + aiokafka shell, unthrottled, to the real broker (records/s acknowledged)
National scale (issue 13), beside today's one-province figures above:
(e) pure generator, all 3,321 communes at the national day volume, 5% bad   (records/s, one core): the
    first N records (a dense timeline's start plans ~one lifecycle per record sent) and the next N, with
    the process's resident memory (the open lifecycles of the simulated days in flight)
(f) generator + aiokafka shell, national, unthrottled
and the ratios of what (e) and (f) achieve to what the country needs: the national peak hour
(31.3 records/s, `services.simulator.national`) and its weekly mean (6.56 records/s).
Also: peak Python heap of generating BENCH_SIM_RECORDS records as a list (tracemalloc), and the time
to build the national world (3,321 commune profiles) once at start.
Size: BENCH_SIM_RECORDS (default 50,000). BENCH_SIM_SHELL=0 skips the broker variants (d) and (f).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
import tracemalloc

from bench import naming
from schemas.events import Family
from services.simulator import national
from services.simulator.generate import DEFAULT_NOW, TrafficConfig, generate, traffic
from services.simulator.producer import run
from services.simulator.profiles import PEAK_FACTOR
from services.simulator.settings import SimulatorSettings
from services.simulator.world import build_communes

N = int(os.environ.get("BENCH_SIM_RECORDS", "50000"))
SHELL = os.environ.get("BENCH_SIM_SHELL", "1") != "0"
NATIONAL_DAY = national.records_per_day()


def pure(label: str, config: TrafficConfig) -> float:
    """Records/s of the pure generator (world building included: it is part of a run's start)."""
    started = time.perf_counter()
    size = sum(len(e.record.value) for e in itertools.islice(traffic(1, DEFAULT_NOW, config), N))
    elapsed = time.perf_counter() - started
    print(f"{label:<48} {N / elapsed:>10,.0f} records/s   {size / N:>6,.0f} B/record")
    return N / elapsed


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def national_pure() -> float:
    """(e): records/s over the first N records and over the next N (the steady state); returns the latter."""
    stream = traffic(1, DEFAULT_NOW, TrafficConfig(national=True, invalid_share=0.05, day_events=NATIONAL_DAY))
    rates, base = [], rss_mb()
    for label in ("first", "next"):
        started = time.perf_counter()
        size = sum(len(e.record.value) for e in itertools.islice(stream, N))
        rates.append(N / (time.perf_counter() - started))
        print(f"{f'(e) pure generator, national, 5% bad, {label} N':<48} {rates[-1]:>10,.0f} records/s   "
              f"{size / N:>6,.0f} B/record  RSS +{rss_mb() - base:,.0f} MB")
    return rates[-1]


def world_build() -> None:
    started = time.perf_counter()
    communes = build_communes(random.Random(1), national.all_provinces(), 0.35)
    elapsed = time.perf_counter() - started
    print(f"{'national world built once at start':<48} {elapsed * 1000:>10,.0f} ms for {len(communes):,} communes")


def memory() -> None:
    tracemalloc.start()
    records = generate(N, seed=1, invalid_share=0.05)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{'generate(N) peak Python heap':<48} {peak / 2**20:>10,.1f} MiB for {len(records):,} records")


def shell(label: str, national_mode: bool) -> float:
    """Records/s acknowledged by the broker, the shell sending as fast as it can."""
    seconds = max(3.0, N / 20_000)
    if national_mode:  # a simulated day so short the pacer never waits; the national day volume kept
        scale = {"national": True, "day_seconds": NATIONAL_DAY / 1e9}
    else:
        scale = {"rate": 1e9, "day_seconds": 500 / 1e9}  # keep 500 records per simulated day
    settings = SimulatorSettings.model_validate({
        "namespace": naming.namespace("sim"), "duration": seconds, "seed": 1,  # Kafka from KAFKA_*
        "invalid_share": 0.05, "progress_every": 3600, **scale,
    })
    started = time.perf_counter()
    progress = asyncio.run(run(settings, asyncio.Event()))
    elapsed = time.perf_counter() - started
    print(f"{label:<48} {progress.total / elapsed:>10,.0f} records/s "
          f"acknowledged ({progress.total:,} in {elapsed:.1f} s incl. start-up)")
    return progress.total / elapsed


def main() -> None:
    print(f"records per variant: {N:,}")
    pure("(a) pure generator, all families, valid", TrafficConfig())
    pure("(b) pure generator, all families, 5% bad", TrafficConfig(invalid_share=0.05))
    pure("(c) pure generator, dossiers only, 5% bad", TrafficConfig(invalid_share=0.05, families=(Family.DOSSIER,)))
    memory()
    if SHELL:
        shell("(d) generator + aiokafka shell, unthrottled", national_mode=False)
    print("national scale (all 34 provinces, 3,321 communes):")
    world_build()
    gen = national_pure()
    sent = shell("(f) national generator + aiokafka shell", national_mode=True) if SHELL else None
    peak, mean = national.mean_rate() * PEAK_FACTOR, national.mean_rate()
    print(f"needed: national peak hour {peak:,.1f} records/s, weekly mean {mean:,.2f} records/s "
          f"({NATIONAL_DAY:,.0f} records a day, DOMAIN.md)")
    print(f"achievable / needed at the peak hour: pure generator (steady) {gen / peak:,.0f}x"
          + (f", with the Kafka shell {sent / peak:,.0f}x" if sent else "")
          + f"; at the weekly mean {gen / mean:,.0f}x")


if __name__ == "__main__":
    main()
