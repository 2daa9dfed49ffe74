"""intake on the 3-broker cluster: a broker SIGKILLed mid-stream and brought back; raw = canonical + DLQ, once each."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from schemas import wire
from schemas.admin import communes_of
from schemas.deadletter import DeadLetterContext
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW, scoped
from tests.cluster.tools import Feeder, Tally, metric_sum, scrape
from tests.faults import Cluster
from tests.kafkatools import Record, free_port, read_all, start_service, stop_service
from tests.samples import canonical_dossier, dumps
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
COMMUNES = communes_of("08")[:40]
N = 3000
KILLED = 2


def stream(n: int) -> tuple[list[Record], list[str | None]]:
    """n raw dossier records keyed by commune, ~8 status events per dossier; every 10th is malformed.
    Returns the records and, per record, its event id (None: malformed)."""
    records: list[Record] = []
    ids: list[str | None] = []
    for i in range(n):
        commune = COMMUNES[i % len(COMMUNES)]
        if i % 10 == 7:
            records.append((commune.encode(), b'{"broken": ' + str(i).encode(), []))
            ids.append(None)
            continue
        code = f"HS-{i % 400:04d}"  # 400 is a multiple of 40: a dossier stays in one commune
        event = {**canonical_dossier(f"evt-{i}", dossier_code=code), "commune": commune, "subject": code}
        records.append((commune.encode(), dumps(event), []))
        ids.append(f"evt-{i}")
    return records, ids


def test_broker_killed_mid_stream_loses_repeats_and_reorders_nothing(
        cluster: Cluster, cluster_namespace: str, tmp_path: Path) -> None:
    """SIGKILL of one of three brokers while intake consumes and commits: every raw record ends canonical or
    dead-lettered exactly once, and each commune's canonical events keep their production order."""
    bootstrap, ns = cluster.bootstrap, cluster_namespace
    raw = scoped(RAW[Family.DOSSIER], ns).name
    records, ids = stream(N)
    port = free_port()
    proc = start_service("services.intake", {"KAFKA_BOOTSTRAP": bootstrap, "INTAKE_NAMESPACE": ns,
                                             "INTAKE_WORKER_ID": "0", "INTAKE_HTTP_PORT": str(port)},
                         tmp_path / "intake.log")

    def records_in() -> float:
        assert proc.poll() is None, (tmp_path / "intake.log").read_text()[-3000:]
        return metric_sum(scrape(port), "commune_intake_records_in_total")

    async def scenario() -> tuple[Feeder, float]:
        feeder = Feeder(bootstrap, [(raw, *r) for r in records], per_second=60, hold_last=600)
        feeding = asyncio.create_task(feeder.run())
        await eventually_async(lambda: records_in() >= 400, timeout=90, interval=0.2, what="intake committing")
        before = records_in()
        killed_at = await asyncio.to_thread(cluster.kill_node, KILLED)
        print(f"\nbroker {KILLED} killed after {feeder.acked} records acknowledged")
        restarting = asyncio.create_task(asyncio.to_thread(cluster.start_node, KILLED))  # back as soon as it can
        await eventually_async(lambda: records_in() > before + 60, timeout=90, interval=0.1,
                               what="intake committing again")
        recovered_s = time.monotonic() - killed_at
        await restarting
        print(f"intake committing again {recovered_s:.1f} s after the kill; broker {KILLED} back after "
              f"{time.monotonic() - killed_at:.1f} s, {feeder.acked} records acknowledged")
        assert not feeding.done(), "the broker must come back while records still flow"
        feeder.release.set()  # the last 600 go through the cluster restored
        await feeding
        return feeder, recovered_s

    try:
        feeder, recovered_s = asyncio.run(scenario())
        tally = account(bootstrap, ns, ids, feeder, recovered_s)
        tally = Tally(**{**tally.__dict__, "restarts": metric_sum(scrape(port), "commune_service_restarts_total")})
        assert proc.poll() is None, "intake must ride through the broker kill"
    finally:
        stop_service(proc)
    print(tally.line())
    assert (tally.lost, tally.duplicated, tally.out_of_order) == (0, 0, 0), tally.line()


def account(bootstrap: str, ns: str, ids: list[str | None], feeder: Feeder, recovered_s: float) -> Tally:
    """What became of every raw record, read back read_committed: canonical by event id, dead letters by
    source partition and offset; per commune, canonical events in the order their raw records were produced."""
    want_ids = {i for i in ids if i}
    malformed = {(m.partition, m.offset) for m, i in zip(feeder.metadata, ids, strict=True) if i is None}

    async def read() -> tuple[list, list]:  # type: ignore[type-arg]
        canonical = await read_all(bootstrap, scoped(CANONICAL[Family.DOSSIER], ns).name, expect=len(want_ids),
                                   timeout=120)
        dlq = await read_all(bootstrap, scoped(DLQ_INTAKE, ns).name, expect=len(malformed), timeout=60)
        return canonical, dlq

    canonical, dlq = asyncio.run(read())
    events = sorted(((r.partition, r.offset, wire.decode(r.headers, r.value)) for r in canonical),
                    key=lambda t: (t[0], t[1]))
    seen = Counter(e.id for *_, e in events)
    letters = Counter((c.source_partition, c.source_offset)
                      for c in (DeadLetterContext.from_headers(r.headers) for r in dlq))
    lost = len(want_ids - set(seen)) + len(malformed - set(letters))
    duplicated = sum(n - 1 for n in seen.values()) + sum(n - 1 for n in letters.values())
    unexpected = (set(seen) - want_ids) | (set(letters) - malformed)
    assert not unexpected, f"{len(unexpected)} outputs match no record sent"
    last: dict[str, int] = defaultdict(lambda: -1)
    out_of_order = 0
    for _, _, e in events:  # in canonical offset order, per partition (a commune lives in one)
        sequence = int(e.id.removeprefix("evt-"))
        out_of_order += sequence < last[e.commune]
        last[e.commune] = max(last[e.commune], sequence)
    return Tally("cluster: intake, broker 2 SIGKILLed and restarted", len(ids), lost, duplicated, out_of_order,
                 recovered_s)
