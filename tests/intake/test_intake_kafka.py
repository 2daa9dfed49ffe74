"""intake on a real broker: every raw record ends up canonical or dead-lettered, exactly once."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from dataclasses import replace

import orjson
import pytest
from aiokafka import TopicPartition
from cloudevents.v1.kafka import KafkaMessage, from_binary

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, RAW, Group, group_id, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from services.intake.outputs import REROUTED_FROM
from tests.intake.accounting import metric
from tests.intake.conftest import StartIntake
from tests.kafkatools import opened_letters, produce, read_all
from tests.samples import (
    COMMUNE,
    HDR,
    MALFORMED,
    canonical_dossier,
    dumps,
    portal_dossier,
    storm_scheduled,
    visit_completed,
)
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


def valid_records() -> list[tuple[Family, bytes, list[tuple[str, bytes]]]]:
    binary = wire.encode(wire.decode(*_as_binary(canonical_dossier("evt-bin", status=4))))
    return [
        (Family.DOSSIER, dumps(portal_dossier("TL-1", status=2)), HDR),
        (Family.DOSSIER, dumps(portal_dossier("TL-1", status=4)), HDR),
        (Family.DOSSIER, dumps(portal_dossier("TL-1", status=9)), HDR),
        (Family.DOSSIER, dumps(canonical_dossier("evt-canon")), []),
        (Family.DOSSIER, binary.value, binary.headers),
        (Family.MOBILE_TEAM, dumps(visit_completed()), []),
        (Family.ANNOUNCEMENT, dumps(storm_scheduled()), []),
    ]


def _as_binary(event: dict) -> tuple[list[tuple[str, bytes]], bytes]:
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k != "data"]
    return headers, dumps(event["data"])


def test_each_raw_record_is_canonical_or_dead_lettered_with_reason(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """Valid records come out canonical once; each malformed one and each repeat is a reasoned dead letter."""
    valid = valid_records()
    repeats = [valid[0], valid[3]]  # the same portal payload and the same event id again
    sent: list[tuple[Family, bytes | None, list[tuple[str, bytes]], Reason | None]] = (
        [(f, v, h, None) for f, v, h in valid]
        + [(f, v, h, Reason.DUPLICATE_EVENT) for f, v, h in repeats]
        + [(f, v, h, reason) for f, v, h, reason, _ in MALFORMED]
    )

    async def scenario() -> tuple[dict[Family, list], list, int]:
        for family, value, headers, _ in sent:  # one at a time: the order decides which copy is the repeat
            await produce(kafka_bootstrap, intake_topics[RAW[family].name], [(b"02269", value, headers)])
        canonical = {f: await read_all(kafka_bootstrap, intake_topics[CANONICAL[f].name], expect=n, timeout=60)
                     for f, n in Counter(f for f, _, _ in valid).items()}
        sealed = await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=len(sent) - len(valid),
                                timeout=60)
        assert all(dict(r.headers).get(b"dlq.sealed.key".decode()) for r in sealed if r.value)  # ADR 0015
        dlq = await opened_letters(kafka_bootstrap, namespace, sealed)
        raw = await read_all(kafka_bootstrap, intake_topics[RAW[Family.DOSSIER].name], expect=1, timeout=30)
        return canonical, dlq, raw[0].partition

    proc = start_intake()
    canonical, dlq, raw_partition = asyncio.run(scenario())
    assert proc.poll() is None, "intake must survive every malformed input"

    # raw = canonical + dead-lettered, exactly
    assert sum(len(v) for v in canonical.values()) == len(valid)
    assert len(dlq) == len(sent) - len(valid)

    for records in canonical.values():
        for rec in records:
            event = wire.decode(rec.headers, rec.value)
            assert rec.key == b"02269" and event.commune == "02269"
            # intake picks partitions itself (record batches): where a plain producer's default partitioner puts the key
            assert rec.partition == raw_partition
            sdk = from_binary(KafkaMessage(headers=dict(rec.headers), key=rec.key, value=rec.value))
            assert sdk["id"] == event.id and sdk["type"] == event.type and sdk["commune"] == "02269"
    statuses = [wire.decode(r.headers, r.value).data.status for r in canonical[Family.DOSSIER]
                if wire.decode(r.headers, r.value).subject == "TL-1"]
    assert statuses == [2, 4, 9], "one dossier's events keep their order"

    # each dead letter: the original bytes and headers, where it came from, a reason and a message
    expected = [(v, h, r) for _, v, h, r in sent if r is not None]
    by_origin = {}
    for rec in dlq:
        ctx = DeadLetterContext.from_headers(rec.headers)
        by_origin[(ctx.source_topic, ctx.source_offset)] = (rec, ctx)
        assert ctx.message and ctx.field
    assert len(by_origin) == len(expected)
    got = sorted(((rec.value or b"")[:64], ctx.reason.value) for rec, ctx in by_origin.values())
    want = sorted(((v or b"")[:64], r.value) for v, _, r in expected)
    assert got == want
    for rec, ctx in by_origin.values():
        original = [h for h in rec.headers if not h[0].startswith("dlq.")]
        match = [h for v, h, r in expected if v == rec.value and r == ctx.reason]
        assert original in match
    five_mb = [rec for rec, ctx in by_origin.values() if ctx.reason is Reason.PAYLOAD_TOO_LARGE]
    assert len(five_mb) == 1 and len(five_mb[0].value) > 5 * 1024 * 1024

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/metrics").read().decode()
    assert 'commune_intake_records_rejected_total{family="dossier",reason="duplicate_event"} 2.0' in metrics
    assert "Nguyễn" not in metrics and "0912345678" not in metrics


async def _send_to(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]],
                   ) -> None:
    """(partition, key, value, headers) each to the partition given, as a producer with its own partitioner would."""
    producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id="tests")
    await producer.start()
    try:
        for partition, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
    finally:
        await producer.stop()


def test_an_unkeyed_repeat_is_published_once_wherever_it_lands(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """The same portal payload sent twice without a key, to two partitions that are not its commune's: it is
    re-routed to the commune's partition both times, published once, and the second copy is a duplicate_event."""
    raw = intake_topics[RAW[Family.DOSSIER].name]
    payload = dumps(portal_dossier("TL-UNKEYED", status=2))

    async def scenario() -> tuple[list, list, int]:
        count = len(await _partitions(kafka_bootstrap, raw))
        home = partition_for(COMMUNE.encode(), count)
        first, second = (home + 1) % count, (home + 2) % count
        await _send_to(kafka_bootstrap, raw, [(first, None, payload, HDR)])
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name], expect=1, idle=0.5)
        await _send_to(kafka_bootstrap, raw, [(second, None, payload, HDR)])  # after the first is published
        dlq = await opened_letters(kafka_bootstrap, namespace, await read_all(
            kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=1, timeout=60))
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name], expect=1)
        return canonical, dlq, home

    start_intake()
    canonical, dlq, home = asyncio.run(scenario())
    assert len(canonical) == 1 and canonical[0].partition == home
    assert wire.decode(canonical[0].headers, canonical[0].value).subject == "TL-UNKEYED"
    assert len(dlq) == 1
    context = DeadLetterContext.from_headers(dlq[0].headers)
    assert context.reason is Reason.DUPLICATE_EVENT and context.source_partition == home
    assert dlq[0].value == payload
    origin = dict(dlq[0].headers)[REROUTED_FROM].decode()
    assert origin.startswith(f"{raw}/") and int(origin.split("/")[1]) != home, "the dead letter says where it was sent"


async def _partitions(bootstrap: str, topic: str) -> set[int]:
    producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id="tests")
    await producer.start()
    try:
        return await producer.partitions_for(topic)
    finally:
        await producer.stop()


def test_a_transaction_whose_send_failed_is_aborted_and_shows_nothing(
    kafka_bootstrap: str, namespace: str, start_intake: StartIntake
) -> None:
    """The broker refuses a canonical batch (over the topic's max.message.bytes): its transaction is aborted, so
    neither that event, nor the dead letter validated with it, nor its changelog entry, nor its offset is committed."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    small_limit = replace(scoped(CANONICAL[Family.DOSSIER], namespace), config={"max.message.bytes": "2048"})
    specs = [*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP]
    asyncio.run(ensure_topics(conn, [small_limit]))  # first: the worker's own check then finds it
    asyncio.run(ensure_topics(conn, [scoped(s, namespace) for s in specs]))
    topics = {s.name: scoped(s, namespace).name for s in specs}
    raw = topics[RAW[Family.DOSSIER].name]
    documents = [{"TenTaiLieu": f"Tài liệu {i}", "DuocSoHoa": True, "DuocTaiSuDung": False} for i in range(60)]
    big = dumps(portal_dossier("TL-BIG", status=2, TaiLieuNop=documents))  # about 4.6 kB canonical

    async def scenario(port: int) -> tuple[list, list, list, int | None]:
        await produce(kafka_bootstrap, raw, [(COMMUNE.encode(), dumps(canonical_dossier("evt-small")), [])])
        await read_all(kafka_bootstrap, topics[CANONICAL[Family.DOSSIER].name], expect=1, idle=0.1, timeout=60)
        await produce(kafka_bootstrap, raw, [(COMMUNE.encode(), big, HDR), (COMMUNE.encode(), b'{"broken": 1', [])])
        await eventually_async(lambda: asyncio.to_thread(metric, port, "commune_intake_transactions_aborted_total"),
                               timeout=60, what="an aborted transaction")
        canonical = await read_all(kafka_bootstrap, topics[CANONICAL[Family.DOSSIER].name], idle=1)
        dlq = await read_all(kafka_bootstrap, topics[DLQ_INTAKE.name], idle=1)
        changelog = await read_all(kafka_bootstrap, topics[INTAKE_DEDUP.name], idle=1)
        home = partition_for(COMMUNE.encode(), len(await _partitions(kafka_bootstrap, raw)))
        reader = clients.consumer(conn, client_id="tests", group_id=group_id(Group.INTAKE, namespace))
        await reader.start()
        try:
            committed = await reader.committed(TopicPartition(raw, home))
        finally:
            await reader.stop()
        return canonical, dlq, changelog, committed

    proc = start_intake()
    canonical, dlq, changelog, committed = asyncio.run(scenario(proc.http_port))  # type: ignore[attr-defined]
    assert [wire.decode(r.headers, r.value).id for r in canonical] == ["evt-small"]
    assert dlq == [], "the dead letter of the aborted transaction must not be visible"
    assert len(changelog) == 1 and b"evt-small" in changelog[0].value
    assert committed == 1, "the input offset stays before the refused record"
    assert proc.poll() is None, "the run restarts; the process stays up"
    assert (metric(proc.http_port, "commune_intake_transactions_aborted_total") or 0) >= 1  # type: ignore[attr-defined]


def test_ids_are_unique_per_source_and_earlier_changelog_records_still_count(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """Two systems of one commune numbering their events alike are two events (CloudEvents: source + id), a repeat
    from the same source is a duplicate, and an id restored from a changelog record of the earlier form (bare ids)
    is still published once."""
    raw = intake_topics[RAW[Family.DOSSIER].name]
    one_stop = canonical_dossier("1001")
    other = {**canonical_dossier("1001", status=4), "source": "/communes/02269/another-system"}
    old = canonical_dossier("evt-before-upgrade")

    async def scenario() -> tuple[list, list]:
        home = partition_for(COMMUNE.encode(), len(await _partitions(kafka_bootstrap, raw)))
        legacy = orjson.dumps({"at": int(time.time() * 1000), "ids": ["evt-before-upgrade"]})
        await _send_to(kafka_bootstrap, intake_topics[INTAKE_DEDUP.name], [(home, b"dossier:%d:0" % home, legacy, [])])
        start_intake()
        for event in (one_stop, other, one_stop, old):
            await produce(kafka_bootstrap, raw, [(COMMUNE.encode(), dumps(event), [])])
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name], expect=2, timeout=60)
        sealed = await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=2, timeout=60)
        return canonical, await opened_letters(kafka_bootstrap, namespace, sealed)

    canonical, dlq = asyncio.run(scenario())
    published = sorted((dict(r.headers)["ce_source"], dict(r.headers)["ce_id"]) for r in canonical)
    assert published == [(b"/communes/02269/another-system", b"1001"), (b"/communes/02269/one-stop", b"1001")]
    assert [DeadLetterContext.from_headers(r.headers).reason for r in dlq] == [Reason.DUPLICATE_EVENT] * 2
    assert sorted(orjson.loads(r.value)["id"] for r in dlq) == ["1001", "evt-before-upgrade"]
