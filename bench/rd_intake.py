"""Would intake on librdkafka reach 5x the faust agent? Intake's per-record work on confluent-kafka, measured beside
the intake service and the faust agent on the same records (issue 11's speed).

    make up   # or any broker KAFKA_* points at (TLS/SASL too); PRIVACY_* as `make bench` sets them, or not
    .venv/bin/python -m bench.rd_intake [ROUNDS]

Not a `bench_*` module (`make bench` does not run it) and not a service: a prototype that measures. Its worker (a
subprocess, `--worker`) does what intake's hot path does a record: `Decider.decide` (normalise, the source policy
of a registry-less intake, de-duplication against `SeenIds`, sealing when a keyring is set), the commune's home
partition (a record on another is dead-lettered here rather than re-routed: the simulated traffic is keyed by
commune, so none is), `wire.encode`, the data-key records, dead letters with their `dlq.*` and lookup headers, one
changelog record per raw partition and transaction. Exactly once as intake: a transactional producer (murmur2
partitioner, as `services.common.partitioner`), the input offsets sent with the group's metadata (KIP-447, native in
librdkafka), one transaction in flight committed on a thread while the next records are validated (intake's group
commit). Not built: rebalance handling, restore, re-routing, health, metrics, the size checks; it measures an upper
bound of such a service, not one.
Printed per round: events/s of (c) intake, (d) faust, (e) this worker, and the ratios (e)/(d), (c)/(d).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import uvloop

from bench import bench_intake as b
from bench import naming
from bench.client_loop import cpu_s  # the process's CPU, every thread's: librdkafka's own too
from schemas import wire
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, PARTITIONS, RAW, Kind, TopicSpec, scoped
from services.common.admin import ensure_topics
from services.common.logging import configure
from services.common.partitioner import partition_for
from services.intake.decide import Decider, allow_all
from services.intake.dedup import SeenByPartition, changelog_record, published_key
from services.intake.lookup import lookup_names
from services.intake.outcome import Accepted
from services.intake.settings import IntakeSettings

MAX_RECORDS = 1000


def worker() -> None:
    """Consume the raw dossier topic, publish canonical records, dead letters and changelog records exactly once;
    print `rate <events/s>` once N records are committed (from the first record read)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from services.common.acls_apply import librdkafka_config
    from services.privacy.store import key_messages

    raw, namespace, app = (os.environ[k] for k in ("BENCH_RAW", "BENCH_NAMESPACE", "BENCH_APP"))
    canonical = scoped(CANONICAL[Family.DOSSIER], namespace).name
    dlq, changelog = scoped(DLQ_INTAKE, namespace).name, scoped(INTAKE_DEDUP, namespace).name
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    conf = librdkafka_config(b.CONNECTION)
    producer = Producer({**conf, "transactional.id": f"{app}.rd", "linger.ms": 5, "partitioner": "murmur2_random",
                         "retry.backoff.ms": 1, "retry.backoff.max.ms": 5})
    consumer = Consumer({**conf, "group.id": app, "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})
    consumer.subscribe([raw])
    producer.init_transactions()
    seen = SeenByPartition()
    keyring = b.new_keyring()
    max_record_bytes = IntakeSettings().max_record_bytes
    committing: threading.Thread | None = None
    failure: list[BaseException] = []
    done, started = 0, 0.0
    waited = consumed = cpu0 = 0.0

    def commit(offsets: list[Any], metadata: Any) -> None:
        try:
            producer.send_offsets_to_transaction(offsets, metadata)
            producer.commit_transaction()
        except BaseException as exc:  # seen by the main thread at the next join
            failure.append(exc)

    try:
        while not stopping and done < b.N:
            t0 = time.perf_counter()
            messages = [m for m in consumer.consume(num_messages=MAX_RECORDS, timeout=0.1) if not m.error()]
            consumed += time.perf_counter() - t0 if started else 0
            if not messages:
                continue
            if not started:
                started, cpu0 = time.perf_counter(), cpu_s()
            now_ms, rejected_at = int(time.time() * 1000), datetime.now(UTC).isoformat()
            out: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]] = []
            by_partition: dict[int, list[Any]] = {}
            for m in messages:
                by_partition.setdefault(m.partition(), []).append(m)
            offsets = []
            for partition, records in by_partition.items():
                ids = seen.of(Family.DOSSIER, partition)
                decide = Decider(Family.DOSSIER, raw, partition, ids, allow_all, max_record_bytes,
                                 rejected_at, keyring).decide
                published: list[str] = []
                for m in records:
                    headers = m.headers() or []
                    decision = decide(m.value(), headers, m.offset())
                    if isinstance(decision, Accepted) and partition_for(
                            decision.event.commune.encode(), PARTITIONS) == partition:
                        event = decision.event
                        encoded = wire.encode(event)
                        for _, key, value in key_messages(list(decision.keys), namespace):
                            out.append((canonical, value, key, [], None))  # (in intake: the keys' own topic)
                            if keyring is not None:  # confirmed as intake's key store does: written once
                                keyring.apply(key, value)
                        out.append((canonical, encoded.value, encoded.key, list(encoded.headers), None))
                        as_key = published_key(event.source, event.id)
                        ids.add(as_key, now_ms)
                        published.append(as_key)
                        continue
                    if isinstance(decision, Accepted):  # (intake re-routes it; none in this traffic)
                        continue
                    decision = decision.model_copy(update=lookup_names(Family.DOSSIER, m.value(), headers))
                    out.append((dlq, m.value(), m.key(), [*headers, *decision.headers()], None))
                if published:
                    key, value = changelog_record(Family.DOSSIER.value, partition, records[0].offset(), published,
                                                  now_ms)
                    out.append((changelog, value, key, [], partition))
                offsets.append(TopicPartition(raw, partition, records[-1].offset() + 1))
            if committing is not None:
                t0 = time.perf_counter()
                committing.join()
                waited += time.perf_counter() - t0
                if failure:
                    raise failure[0]
            producer.begin_transaction()
            for topic, value, key, headers, p in out:
                if p is None:
                    producer.produce(topic, value, key=key, headers=headers)
                else:
                    producer.produce(topic, value, key=key, headers=headers, partition=p)
            committing = threading.Thread(target=commit, args=(offsets, consumer.consumer_group_metadata()))
            committing.start()
            done += len(messages)
        if committing is not None:
            committing.join()
            if failure:
                raise failure[0]
        if started:
            wall = time.perf_counter() - started
            cpu_us = (cpu_s() - cpu0) / done * 1e6
            print(f"rate {done / wall:.1f} {cpu_us:.1f} {waited / wall:.3f} {consumed / wall:.3f}", flush=True)
    finally:
        consumer.close()


async def rd_intake(raw: str, namespace: str) -> tuple[float, str]:
    """Variant (e): the worker in a subprocess, its own topics; events/s as it reports, and what it spent."""
    env = {**os.environ, "BENCH_RAW": raw, "BENCH_NAMESPACE": namespace, "BENCH_APP": f"{namespace}-rd"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.rd_intake", "--worker", env=env,
                                                stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = (await asyncio.wait_for(proc.stdout.read(), timeout=600)).decode()
    if await proc.wait() != 0 or not out.startswith("rate "):
        raise RuntimeError(f"the librdkafka worker exited with {proc.returncode}: {out[-500:]!r}")
    _, rate, cpu_us, waited, consumed = out.split()
    return float(rate), (f"{float(cpu_us):.0f} µs CPU a record (all threads), {float(waited):.0%} of the time "
                         f"waiting for a commit, {float(consumed):.0%} in consume")


async def one_round(label: str) -> dict[str, float]:
    namespace, rd_namespace = naming.namespace(f"r{label}"), naming.namespace(f"e{label}")
    raw = scoped(RAW[Family.DOSSIER], namespace).name
    out_d = TopicSpec(f"{namespace}.bench.out-d", Kind.INTERNAL, key="", description="")
    specs = [scoped(s, ns) for ns in (namespace, rd_namespace)
             for s in (*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP)]
    await ensure_topics(b.CONNECTION, [*specs, out_d])
    await b.fill(raw, b.raw_records(b.N, seed=42))
    rates = {"c": await b.intake_throughput(namespace), "d": await b.faust_agent(raw, out_d.name, namespace)}
    rates["e"], spent = await rd_intake(raw, rd_namespace)
    await b.drop(namespace)
    await b.drop(rd_namespace)
    print(f"  round {label}: (c) intake {rates['c']:,.0f}  (d) faust {rates['d']:,.0f}  (e) librdkafka worker "
          f"{rates['e']:,.0f} events/s | (e)/(d) {rates['e'] / rates['d']:.1f}x  (c)/(d) "
          f"{rates['c'] / rates['d']:.1f}x  (e)/(c) {rates['e'] / rates['c']:.2f}; (e): {spent}", flush=True)
    return rates


async def run(rounds: int) -> None:
    sealing = "sealing on" if b.SEALING else "sealing off"
    print(f"{b.N:,} simulated dossier records, {PARTITIONS} partitions, {sealing}; {rounds} rounds", flush=True)
    results = [await one_round(str(i + 1)) for i in range(rounds)]
    best = {v: max(r[v] for r in results) for v in "cde"}
    print(f"best of {rounds}: (e)/(d) {best['e'] / best['d']:.1f}x  (c)/(d) {best['c'] / best['d']:.1f}x", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker()
    else:
        configure("WARNING")
        uvloop.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
