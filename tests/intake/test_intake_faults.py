"""intake under faults on a real broker: SIGKILL mid-stream, broker restart. Nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import signal
import urllib.request

import pytest

from schemas import wire
from schemas.admin import communes_of
from schemas.deadletter import DeadLetterContext
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, RAW, Group, group_id, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture
from tests.intake.conftest import StartIntake
from tests.kafkatools import Producing, produce, read_all
from tests.notify.conftest import group_caught_up
from tests.notify.test_notify_outage import probe
from tests.samples import canonical_dossier, dumps
from tests.waiting import eventually, eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
COMMUNES = communes_of("08")[:40]


def stream(n: int, start: int = 0) -> list[tuple[bytes, bytes, list[tuple[str, bytes]], str | None]]:
    """n raw dossier records over 40 communes; every 10th is malformed. Returns (key, value, headers, event id)."""
    out = []
    for i in range(start, start + n):
        commune = COMMUNES[i % len(COMMUNES)]
        if i % 10 == 7:
            out.append((commune.encode(), b'{"broken": ' + str(i).encode(), [], None))
            continue
        event = {**canonical_dossier(f"evt-{i}"), "commune": commune, "subject": f"D-{i}"}
        out.append((commune.encode(), dumps(event), [], f"evt-{i}"))
    return out


async def produce_paced(bootstrap: str, topic: str, records: list, per_second: int,
                        hold: asyncio.Event | None = None) -> None:
    """Send `records` a slice every 50 ms with one producer (a producer per slice would pace the stream by its
    handshakes, slower on the secure broker). With `hold`, the last tenth waits until it is set, so the stream
    outlasts whatever the test does meanwhile however slow the machine is."""
    chunk = max(1, per_second // 20)
    held_from = len(records) - len(records) // 10 if hold is not None else len(records)
    async with Producing(bootstrap) as producing:
        for i in range(0, len(records), chunk):
            if hold is not None and i >= held_from:
                await hold.wait()
            await producing.send(topic, [(k, v, h) for k, v, h, _ in records[i:i + chunk]])
            await asyncio.sleep(0.05)


async def first_commit(http_port: int, within_s: float = 60) -> None:
    """Wait until the worker has committed its first transaction (its records-in counter moved)."""
    def counted() -> bool:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2).read().decode()
        except OSError:
            return False  # not listening yet
        return 'commune_intake_records_in_total{family="dossier"}' in text

    await eventually_async(lambda: asyncio.to_thread(counted), timeout=within_s, what="intake's first commit")


def check_exactly_once(bootstrap: str, topics: dict[str, str], records: list) -> None:
    want_ids = {eid for *_, eid in records if eid}
    want_bad = len(records) - len(want_ids)

    async def read() -> tuple[list, list]:
        canonical = await read_all(bootstrap, topics[CANONICAL[Family.DOSSIER].name], expect=len(want_ids), timeout=120)
        dlq = await read_all(bootstrap, topics[DLQ_INTAKE.name], expect=want_bad, timeout=60)
        return canonical, dlq

    canonical, dlq = asyncio.run(read())
    ids = [wire.decode(r.headers, r.value).id for r in canonical]
    assert len(ids) == len(set(ids)), "an event was published twice"
    assert set(ids) == want_ids, f"lost {len(want_ids - set(ids))} events"
    offsets = [(c.source_partition, c.source_offset) for c in (DeadLetterContext.from_headers(r.headers) for r in dlq)]
    assert len(offsets) == len(set(offsets)) == want_bad, "a malformed record was dead-lettered twice or lost"


def test_sigkill_mid_stream_then_restart_loses_and_repeats_nothing(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """A worker killed with SIGKILL while records flow is restarted; raw = canonical + DLQ, each exactly once."""
    records = stream(3000)
    raw = intake_topics[RAW[Family.DOSSIER].name]

    canonical_topic = intake_topics[CANONICAL[Family.DOSSIER].name]

    async def scenario() -> int:
        # the last tenth waits for the kill: a worker slow to start found the whole stream written and could commit
        # it all before the kill landed (a helper's review of the tests' timing)
        killed = asyncio.Event()
        feeder = asyncio.create_task(produce_paced(kafka_bootstrap, raw, records, per_second=1000, hold=killed))
        proc = start_intake()
        await first_commit(proc.http_port)  # the worker is mid-stream from here on
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed.set()
        before_restart = len(await read_all(kafka_bootstrap, canonical_topic, idle=0.5, timeout=5))
        start_intake()
        await feeder
        return before_restart

    before_restart = asyncio.run(scenario())
    assert 0 < before_restart < len(records) * 0.9, "the kill must land mid-stream"
    check_exactly_once(kafka_bootstrap, intake_topics, records)

    # ids published before the kill are still remembered after it: repeats become dead letters
    repeats = [r for r in records[:50] if r[3]][:5]
    asyncio.run(produce(kafka_bootstrap, raw, [(k, v, h) for k, v, h, _ in repeats]))
    dlq = asyncio.run(read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], timeout=30, idle=3))
    reasons = [DeadLetterContext.from_headers(r.headers).reason.value for r in dlq]
    assert reasons.count("duplicate_event") == len(repeats)


def test_rebalances_mid_stream_lose_and_repeat_nothing(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """A second worker joins while records flow, then the first leaves: partitions move twice with
    validated records and a transaction in flight; raw = canonical + DLQ, each exactly once."""
    records = stream(6000, start=10_000)
    raw = intake_topics[RAW[Family.DOSSIER].name]

    async def scenario() -> None:
        moved = asyncio.Event()  # the stream's last tenth waits for both moves: they happen mid-stream
        feeder = asyncio.create_task(produce_paced(kafka_bootstrap, raw, records, per_second=400, hold=moved))
        first = start_intake(worker_id="0")
        await first_commit(first.http_port)
        second = start_intake(worker_id="1")  # joins: partitions are revoked from the first, mid-stream
        await first_commit(second.http_port)
        first.send_signal(signal.SIGTERM)  # leaves: its partitions move to the second
        await asyncio.to_thread(first.wait, 30)
        assert not feeder.done(), "the moves must happen mid-stream"
        moved.set()
        await feeder

    asyncio.run(scenario())
    check_exactly_once(kafka_bootstrap, intake_topics, records)


def test_broker_restart_mid_stream_loses_and_repeats_nothing(
    own_broker: OwnBroker, namespace: str, start_intake: StartIntake  # noqa: F811 - the fixture
) -> None:
    """The broker stops and comes back while records flow; the worker recovers and each record is handled once. An
    idle worker's `/readyz` says so meanwhile: 503 `broker unreachable` while the broker is gone (before, an idle
    intake stayed 200 through the outage), 200 again once it is back."""
    bootstrap = own_broker.bootstrap
    specs = [*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP]
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=bootstrap), [scoped(s, namespace) for s in specs]))
    topics = {s.name: scoped(s, namespace).name for s in specs}
    first, second = stream(800), stream(800, start=800)

    worker = start_intake(bootstrap=bootstrap)
    port: int = worker.http_port  # type: ignore[attr-defined]
    asyncio.run(produce_paced(bootstrap, topics[RAW[Family.DOSSIER].name], first, per_second=800))
    eventually(lambda: probe(port, "/readyz") == 200, timeout=60, what="intake ready before the outage")
    raw_topics = [topics[t.name] for t in RAW.values()]
    asyncio.run(group_caught_up(bootstrap, group_id(Group.INTAKE, namespace), raw_topics))  # idle: nothing in flight
    own_broker.stop()
    eventually(lambda: probe(port, "/readyz") == 503, timeout=30, what="/readyz 503 while the broker is gone")
    own_broker.start()
    eventually(lambda: probe(port, "/readyz") == 200, timeout=120, what="/readyz 200 once the broker is back")
    asyncio.run(produce_paced(bootstrap, topics[RAW[Family.DOSSIER].name], second, per_second=800))
    check_exactly_once(bootstrap, topics, first + second)
