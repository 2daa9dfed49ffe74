"""Metrics service benchmark (`make bench`, or `python -m bench bench_metrics`).

Side by side in one run, national scale (all 3,321 communes active, issue 13) beside one province
(Lạng Sơn's 65 communes, the scale the demo and the simulator ran at until then), the same number of events:
  1. events/s of the pure core (decode + merge + totals, no Kafka) and of one metrics worker on the
     local broker (consume read_committed, apply, flush changelog, commit);
  2. time to build /metrics (exposition + the worker's own metrics);
  3. resident memory per million open dossiers, measured in a subprocess at 200,000 open dossiers
     (RocksDB store + totals) and extrapolated linearly to one million.
Targets (issues 4 and 13): >= 20,000 events/s per worker and scrape <= 250 ms with all 3,321 communes
active, <= 300 MB per million open dossiers. BENCH_METRICS_FAUST=0 skips the faust comparison.

Decode, before/after (ADR 0023): the core and the worker are each measured with the full decode
(`schemas.wire.decode`, every field validated: the path before the slim views), with the slim
views (`services.metrics.decoding.slim`) and with the worker's own decode (`decoding.fast`: msgspec for
dossier events), alternately, `BENCH_METRICS_ROUNDS` times (default 2, the best of each reported).
BENCH_METRICS_PROVINCE=0 skips the one-province scale; BENCH_METRICS_PROFILE=1 prints a cProfile of one
more worker run. The bench deletes the topics of the namespaces it made.
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import gc
import hashlib
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY, generate_latest

from bench import naming
from schemas import wire
from schemas.admin import commune_provinces, communes_of
from schemas.dossier import DossierData, DossierStatusChanged
from schemas.events import Family
from schemas.topics import CANONICAL, scoped
from services.common import clients
from services.common.admin import delete_topics, ensure_topics, list_topics
from services.common.health import Health
from services.common.runtime import run_once
from services.common.settings import KafkaConnection
from services.metrics import decoding
from services.metrics.partition import PartitionState
from services.metrics.settings import MetricsSettings
from services.metrics.topics import Names
from services.metrics.worker import MetricsWorker

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
CONN = KafkaConnection(bootstrap=BOOTSTRAP)
EVENTS = int(os.environ.get("BENCH_METRICS_EVENTS", "120000"))
FAUST_EVENTS = int(os.environ.get("BENCH_METRICS_FAUST_EVENTS", "30000"))
OPEN_DOSSIERS = int(os.environ.get("BENCH_METRICS_OPEN", "200000"))
T0 = datetime(2025, 11, 3, 1, 0, tzinfo=UTC)
CHANNELS = ("counter", "online", "postal", "mobile_team")
FAUST = os.environ.get("BENCH_METRICS_FAUST", "1") != "0"
ONE_PROVINCE = "20"  # Lạng Sơn, the simulator's default province
ROUNDS = int(os.environ.get("BENCH_METRICS_ROUNDS", "2"))
PROVINCE = os.environ.get("BENCH_METRICS_PROVINCE", "1") != "0"
PROFILE = os.environ.get("BENCH_METRICS_PROFILE", "0") == "1"
DECODES: dict[str, decoding.Decode] = {"full decode": decoding.full, "slim views": decoding.slim,
                                       "fast path (the worker's)": decoding.fast}
"""The decodes measured side by side: every field (before ADR 0023), the slim views, the worker's own (msgspec
for dossier events, `services.metrics.fast`, the views for the rest)."""
NAMESPACES: list[str] = []
"""The namespaces this run made: their topics are deleted at the end (only those)."""


def canonical_content(code: str, i: int) -> dict[str, Any]:
    """What a canonical dossier event carries besides the bench's few fields, as intake writes it: names, the
    handling unit, submitted documents and the sealed applicant (tokens of the shape `schemas.personal` takes)."""
    def token(field: str, size: int) -> str:
        digest = hashlib.sha256(f"{code}/{field}".encode()).digest() * 4
        return base64.urlsafe_b64encode(digest[:size]).rstrip(b"=").decode()

    return {"procedure_name": "Cấp bản sao trích lục hộ tịch", "field_code": "HT", "handling_unit": "UBND xã",
            "assigned_officer_id": f"cb-{i % 9}", "vneid_verified": i % 2 == 0,
            "documents": [{"name": "Tờ khai", "digitised": True}, {"name": "Bản sao CCCD", "digitised": i % 2 == 0}],
            "applicant": {"subject": "a-" + token("subject", 32), "key_id": token("key", 12),
                          "name": token("name", 48), "id_number": token("id", 40), "phone": token("phone", 38),
                          "address": token("address", 90), "preferred_locale": "vi"}}


def dossier_events(n: int, statuses: tuple[int, ...] = (2, 4, 9, 10), province: str | None = None,
                   canonical: bool = False) -> Iterator[DossierStatusChanged]:
    """Lifecycles of n / len(statuses) dossiers spread over all 3,321 communes (or one province's), in order;
    `canonical`: with the content intake's canonical events carry (`canonical_content`), not only what
    metrics reads."""
    communes = sorted(commune_provinces().items())
    if province is not None:
        communes = [(c, province) for c in communes_of(province)]
    for i in range(n // len(statuses)):
        commune, province = communes[i % len(communes)]
        code = f"B-{i:08d}"
        for step, status in enumerate(statuses):
            data = {"dossier_code": code, "procedure_code": "1.001234", "channel": CHANNELS[i % 4], "status": status,
                    "submitted_at": T0, "received_at": T0, "due_at": T0 + timedelta(days=3 + i % 3),
                    "paid_online": i % 3 == 0, "digitised": i % 2 == 0,
                    "fees": [{"amount_vnd": 8000}] if i % 3 != 2 else []}
            if canonical:
                data |= canonical_content(code, i)
            if status in (9, 10):
                data["ended_at"] = T0 + timedelta(days=2 + i % 4)
            if status == 10:
                data["returned_at"] = data["ended_at"]
            yield DossierStatusChanged(
                id=f"{code}-{step}", source=f"/communes/{commune}/one-stop", time=T0 + timedelta(hours=step),
                subject=code, commune=commune, province=province, data=DossierData.model_validate(data))


def core_rates(records: list[wire.KafkaRecord]) -> dict[str, float]:
    """Per decode, the best of three passes over 40,000 records, the decodes alternating pass by pass (the
    machine is shared; the best pass is the least disturbed, and both meet the same disturbances)."""
    sample, best = records[:40_000], dict.fromkeys(DECODES, 0.0)
    for _ in range(3):
        for name, decode in DECODES.items():
            parts = [PartitionState(p, {}) for p in range(6)]
            started = time.perf_counter()
            for i, rec in enumerate(sample):
                parts[i % 6].apply(decode(rec.headers, rec.value))
            best[name] = max(best[name], len(sample) / (time.perf_counter() - started))
    return best


async def produce(topic: str, records: list[wire.KafkaRecord]) -> dict[TopicPartition, int]:
    """Write `records` to `topic`; returns the end offset of each partition written to."""
    producer = AIOKafkaProducer(**clients.connection_options(CONN), linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records]
        written = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ends: dict[TopicPartition, int] = {}
    for meta in written:
        tp = TopicPartition(topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


def consumed() -> float:
    return sum(REGISTRY.get_sample_value("commune_metrics_events_total", {"family": "dossier", "outcome": o}) or 0.0
               for o in ("applied", "unchanged", "invalid"))


async def poll(done: Callable[[], bool], interval_s: float, timeout_s: float = 600) -> None:
    """Return once `done()` holds, checking every `interval_s` (the worker's progress has no event to wait on);
    TimeoutError after `timeout_s` (e.g. the topics were deleted under the run by a `python -m bench` clean-up)."""
    async with asyncio.timeout(timeout_s):
        while not done():
            await asyncio.sleep(interval_s)


async def until_committed(worker: MetricsWorker, ends: dict[TopicPartition, int]) -> None:
    """Return once the worker's group has committed `ends`: a batch's changelog transactions and offset commit run
    after its apply, in the background (`MetricsWorker.process`), so the last one is done only then."""
    assert worker.consumer is not None
    async with asyncio.timeout(600):
        while await asyncio.gather(*(worker.consumer.committed(tp) for tp in ends)) != list(ends.values()):
            await asyncio.sleep(0.005)


async def restore_rate(settings: MetricsSettings) -> tuple[float, float]:
    """A fresh worker of the same group rebuilding all six partitions from the changelog: (records/s, seconds)."""
    from services.metrics import telemetry

    worker = MetricsWorker(settings.model_copy(update={"worker_id": "restorer", "state_dir": Path(tempfile.mkdtemp())}))
    stop = asyncio.Event()
    before = telemetry.RESTORED._value.get()
    started = time.perf_counter()
    task = asyncio.create_task(run_once("metrics", worker.run, stop, Health("metrics")))
    await poll(lambda: len(worker.ownership.owned) == 6, 0.01)
    elapsed = time.perf_counter() - started  # includes joining the group
    stop.set()
    await task
    return (telemetry.RESTORED._value.get() - before) / elapsed, elapsed


async def worker_rate(records: list[wire.KafkaRecord], decode: decoding.Decode = decoding.fast,
                      profile: cProfile.Profile | None = None,
                      ) -> tuple[float, float, int, MetricsWorker, asyncio.Event, asyncio.Task[None]]:
    """One worker with `decode` over `records` in a namespace of its own (`profile`: enabled while it consumes)."""
    namespace = naming.namespace("metrics")
    NAMESPACES.append(namespace)
    await ensure_topics(CONN, Names(namespace).specs)
    ends = await produce(scoped(CANONICAL[Family.DOSSIER], namespace).name, records)
    settings = MetricsSettings(bootstrap=BOOTSTRAP, namespace=namespace, state_dir=Path(tempfile.mkdtemp()),
                               snapshot_interval_s=3600)
    worker = MetricsWorker(settings, decode=decode)
    stop = asyncio.Event()
    before = consumed()
    task = asyncio.create_task(run_once("metrics", worker.run, stop, Health("metrics")))
    await poll(lambda: len(worker.ownership.owned) == 6, 0.005)
    if profile is not None:
        profile.enable()
    started = time.perf_counter()  # from the end of the partition assignment
    # the worker may have applied its first batch before this task saw the assignment (the loop is busy while a
    # batch is applied): only the records consumed after `started` count
    counted = len(records) - (consumed() - before)
    await poll(lambda: consumed() - before >= len(records), 0.02)
    await until_committed(worker, ends)  # the clock stops at the last batch's commit, not at its apply
    elapsed = time.perf_counter() - started
    if profile is not None:
        profile.disable()
    communes = sum(len(p.communes) for p in worker.exported())
    return counted / elapsed, elapsed, communes, worker, stop, task


def size_of(records: list[wire.KafkaRecord]) -> str:
    """Mean value and header bytes of a record."""
    values = statistics.mean(len(r.value) for r in records)
    headers = statistics.mean(sum(len(k) + len(v) for k, v in r.headers) for r in records)
    return f"value {values:.0f} B + headers {headers:.0f} B"


def scrape_ms(worker: MetricsWorker) -> tuple[float, int, int]:
    """What one scrape of /metrics builds (services.common.http): the commune figures, then the process's own."""
    times, text = [], ""
    for _ in range(7):
        started = time.perf_counter()
        text = worker.figures() + generate_latest(REGISTRY).decode()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), text.count("\n"), len(text.encode())


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory_child(n: int) -> None:
    """Run in a subprocess: RSS growth from n open dossiers (RocksDB store + totals)."""
    from services.metrics import store

    path = Path(tempfile.mkdtemp()) / "p0"
    db = store.open_fresh(path)
    part = PartitionState(0, store.as_mapping(db))
    gc.collect()
    base = rss_mb()
    for event in dossier_events(n, statuses=(2,)):
        part.apply(event)
    gc.collect()
    grown = rss_mb() - base
    print(f"{grown:.1f} {len(part.communes)} {sum(t.get('open') for t in part.communes.values())}")
    store.discard(db, path)


async def scale(label: str, records: list[wire.KafkaRecord]) -> tuple[MetricsWorker, list[str]]:
    """Core, worker and scrape figures of one scale, the decodes side by side, as printed lines; the
    worker of the last round is returned stopped, its state kept."""
    core = core_rates(records)
    rates: dict[str, list[float]] = {name: [] for name in DECODES}
    for _ in range(ROUNDS):
        for name, decode in DECODES.items():
            rate, _, communes, worker, stop, task = await worker_rate(records, decode)
            rates[name].append(rate)
            if decode is decoding.fast:
                median_ms, lines, size = scrape_ms(worker)
            stop.set()
            await task
    full, slim, fast = (max(rates[name]) for name in DECODES)
    cores = list(core.values())
    out = [f"{label}: {communes:,} communes active, {len(records):,} events"]
    for name in DECODES:
        out += [f"  pure core (decode + merge + totals), {name:<24} {core[name]:>8,.0f} events/s",
                f"  metrics worker on the broker, {name:<28} {max(rates[name]):>8,.0f} events/s   "
                f"(rounds: {', '.join(f'{r:,.0f}' for r in rates[name])})"]
    out += [f"  core: slim / full {cores[1] / cores[0]:.2f}x, fast / slim {cores[2] / cores[1]:.2f}x; "
            f"worker: slim / full {slim / full:.2f}x, fast / slim {fast / slim:.2f}x; "
            f"worker target >= 20,000 events/s",
            f"  /metrics                                {median_ms:>10.1f} ms        target <= 250 "
            f"({lines:,} lines, {size / 1e6:.2f} MB, median of 7)"]
    return worker, out


async def run() -> None:
    print(f"building {EVENTS:,} dossier events over all communes"
          + (", and as many over one province" if PROVINCE else "") + " ...", flush=True)
    records = [wire.encode(e) for e in dossier_events(EVENTS)]
    canonical = [wire.encode(e) for e in dossier_events(EVENTS, canonical=True)]
    province = [wire.encode(e) for e in dossier_events(EVENTS, province=ONE_PROVINCE)] if PROVINCE else []
    # the harness's records out of the cyclic GC's reach, as the service freezes its import-time heap
    # (runtime.freeze_imports): else every full collection of the worker's run walks them too
    gc.collect()
    gc.freeze()
    try:
        await measure(records, canonical, province)
    finally:
        await delete_own_topics()


async def measure(records: list[wire.KafkaRecord], canonical: list[wire.KafkaRecord],
                  province: list[wire.KafkaRecord]) -> None:
    worker, national_lines = await scale(f"national, the bench's small events ({size_of(records)})", records)
    restored, restore_s = await restore_rate(worker.settings)
    national_lines += (await scale(f"national, events as intake writes them ({size_of(canonical)})", canonical))[1]
    province_lines = (await scale(f"one province ({ONE_PROVINCE})", province))[1] if PROVINCE else []
    if PROFILE:
        profiled = cProfile.Profile()
        _, _, _, _, stop, task = await worker_rate(records, decoding.fast, profiled)
        stop.set()
        await task
        pstats.Stats(profiled).sort_stats("tottime").print_stats(25)
    child = await asyncio.to_thread(subprocess.run,
                                    [sys.executable, "-m", "bench.bench_metrics", "memory", str(OPEN_DOSSIERS)],
                                    capture_output=True, text=True, timeout=150, check=True)
    grown, _, opened = child.stdout.split()
    per_million = float(grown) * 1_000_000 / int(opened)
    print("\n".join(national_lines + province_lines))
    print(f"restore on assignment (changelog)        {restored:>10,.0f} records/s  "
          f"(all partitions in {restore_s:.1f} s, incl. group join)")
    print(f"memory per million open dossiers         {per_million:>10.0f} MB        target <= 300 "
          f"(measured +{float(grown):.0f} MB RSS at {int(opened):,} open, extrapolated linearly)")


async def delete_own_topics() -> None:
    """The topics of the namespaces this run made, and no other (the broker is shared)."""
    prefixes = tuple(f"{namespace}." for namespace in NAMESPACES)
    mine = [t for t in await list_topics(CONN) if t.startswith(prefixes)]
    if mine:
        await delete_topics(CONN, mine)


def faust_child(topic: str, app_id: str, n: int, result: str, datadir: str, web_port: int) -> None:
    """Run in a subprocess: the same merge in a faust agent with a changelog-backed RocksDB (rocksdict) table."""
    import faust

    from services.metrics.aggregate import CommuneTotals
    from services.metrics.partition import dumps, entity_key, loads, merge

    app = faust.App(app_id, **clients.faust_options(CONN), store="rocksdb://", topic_partitions=6,
                    web_host="127.0.0.1", web_port=web_port, datadir=datadir, consumer_auto_offset_reset="earliest")
    source = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    table = app.Table("entities", key_type=bytes, value_type=bytes,
                      partitions=6)
    totals: dict[str, CommuneTotals] = {}
    seen = {"n": 0, "start": 0.0}

    @app.agent(source)
    async def apply(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            if not seen["n"]:
                seen["start"] = time.perf_counter()
            ev = wire.decode(list(event.message.headers or []), event.value)
            key = entity_key(ev)
            raw = table.get(key)
            old = loads(key, raw) if raw is not None else None
            new = merge(old, ev)
            if new is not None:
                table[key] = dumps(new)
                totals.setdefault(ev.commune, CommuneTotals(ev.province)).replace(old, new)
            seen["n"] += 1
            if seen["n"] == n:
                await asyncio.to_thread(Path(result).write_text, str(n / (time.perf_counter() - seen["start"])))

    sys.argv = [sys.argv[0], "worker", "-l", os.environ.get("BENCH_FAUST_LOG", "error")]
    app.main()


def faust_rate(records: list[wire.KafkaRecord]) -> float | None:
    """Events/s of the faust-table variant on the same records (None if it did not finish in time)."""
    namespace = naming.namespace("faust")
    topic = scoped(CANONICAL[Family.DOSSIER], namespace).name
    asyncio.run(ensure_topics(CONN, [scoped(CANONICAL[Family.DOSSIER], namespace)]))
    asyncio.run(produce(topic, records))
    work = Path(tempfile.mkdtemp())
    result = work / "rate"
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_metrics", "faust", topic, namespace, str(len(records)),
                             str(result), str(work / "data"), str(_free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not result.exists() and proc.poll() is None:
            time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return float(result.read_text()) if result.exists() else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "memory":
        memory_child(int(sys.argv[2]))
        return
    if len(sys.argv) == 8 and sys.argv[1] == "faust":
        faust_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[7]))
        return
    uvloop.run(run())  # as `python -m services.metrics` runs
    if not FAUST:
        return
    faust = faust_rate([wire.encode(e) for e in dossier_events(FAUST_EVENTS)])
    print(f"same merge as a faust agent + table      {faust or 0:>10,.0f} events/s   "
          f"({FAUST_EVENTS:,} events, rocksdb:// via rocksdict, changelog-backed)"
          + ("" if faust else "  DID NOT FINISH within 90 s"))


if __name__ == "__main__":
    main()
