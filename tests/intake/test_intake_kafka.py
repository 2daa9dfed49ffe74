"""intake on a real broker: every raw record ends up canonical or dead-lettered, exactly once."""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter

import pytest
from cloudevents.v1.kafka import KafkaMessage, from_binary

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW
from tests.intake.conftest import StartIntake
from tests.kafkatools import produce, read_all
from tests.samples import HDR, MALFORMED, canonical_dossier, dumps, portal_dossier, storm_scheduled, visit_completed

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
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake
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
        dlq = await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=len(sent) - len(valid), timeout=60)
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
