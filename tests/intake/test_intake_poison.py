"""Poison records on the real broker: each is a reasoned dead letter and the worker goes on with the next record."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, MAX_RECORD_BYTES, RAW, scoped
from services.common import clients
from services.common.admin import described_configs, ensure_topics
from services.common.settings import KafkaConnection
from tests.intake.conftest import StartIntake
from tests.kafkatools import produce, read_all
from tests.samples import HDR, canonical_dossier, dumps, portal_dossier, with_data

pytestmark = pytest.mark.kafka

_DEEP = b'{"x":' * 300 + b"1" + b"}" * 300  # 300 levels: orjson cannot even dump it
_PORTAL = dumps(portal_dossier("TL-DEEP"))
DOSSIER_TYPE = b"vn.communebus.dossier.status-changed.v1"

# (what, value, headers, reason, field): each once crashed a worker or would have
POISON: list[tuple[str, bytes | None, list[tuple[str, bytes]], Reason, str]] = [
    ("year 1", dumps(portal_dossier("TL-Y1", NgayNopHoSo="00010101000000")), HDR, Reason.VALUE_OUT_OF_RANGE,
     "NgayNopHoSo"),
    ("year 9999", dumps(portal_dossier("TL-Y9", NgayHenTra="99991231235959")), HDR, Reason.VALUE_OUT_OF_RANGE,
     "NgayHenTra"),
    ("300-deep nesting", _PORTAL[:-1] + b',"Extra":' + _DEEP + b"}", HDR, Reason.TOO_DEEP, "Extra.x.x.x"),
    ("a million-item list", dumps(portal_dossier("TL-1M", TaiLieuNop=[0] * 1_000_000)), HDR,
     Reason.PAYLOAD_TOO_LARGE, "(record)"),
    ("300,000 items under the byte cap", dumps(portal_dossier("TL-300K", TaiLieuNop=[{}] * 300_000)), HDR,
     Reason.TOO_LARGE, "TaiLieuNop"),
    ("CR/LF in a portal dossier code", dumps(portal_dossier("TL-1\r\nBcc: x@example.com")), HDR,
     Reason.INVALID_FIELD, "MaHoSo"),
    ("CR/LF in a canonical dossier code", dumps(with_data(canonical_dossier("evt-crlf"), dossier_code="TL\r\n2")), [],
     Reason.INVALID_FIELD, "data.dossier_code"),
    ("null value, binary mode", None, [("ce_specversion", b"1.0"), ("ce_type", DOSSIER_TYPE)], Reason.NOT_JSON,
     "(record)"),
    ("non-UTF-8 ce_ header", b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"\xff\xfe")], Reason.NOT_UTF8, "ce_*"),
    # the raw topic takes it; its dead letter (sealed whole, dlq.* headers) is a few hundred bytes larger: refused by a
    # DLQ with the raw topic's limit, it aborted every transaction holding it, run after run (runtime audit finding 2)
    ("a record at the raw topic's limit", b'"' + b"x" * (MAX_RECORD_BYTES - 400) + b'"', HDR,
     Reason.PAYLOAD_TOO_LARGE, "(record)"),
    # 12,000 headers: packed and sealed, each costs more than in the raw batch, past any fixed headroom (review M5)
    ("12,000 headers at the raw topic's limit", b'"' + b"x" * (MAX_RECORD_BYTES - 12_000 * 20 - 2_000) + b'"',
     [*HDR, *[("ce_specversion", b"1.0")] * 12_000], Reason.PAYLOAD_TOO_LARGE, "(record)"),
]


def test_each_poison_record_is_dead_lettered_and_the_records_after_it_are_published(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """Every poison record is a dead letter with its reason and field; a valid record after each one is canonical."""
    raw = intake_topics[RAW[Family.DOSSIER].name]
    sent: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = []
    for i, (_, value, headers, _, _) in enumerate(POISON):
        sent.append((b"02269", value, headers))
        sent.append((b"02269", dumps(portal_dossier(f"TL-AFTER-{i}", status=2)), HDR))

    async def scenario() -> tuple[list, list]:
        await produce(kafka_bootstrap, raw, sent)
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name],
                                   expect=len(POISON), timeout=90)
        dlq = await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=len(POISON), timeout=90)
        return canonical, dlq

    proc = start_intake(INTAKE_MAX_RECORD_BYTES=str(1024 * 1024))
    canonical, dlq = asyncio.run(scenario())
    assert proc.poll() is None, "intake must survive every poison record"
    codes = sorted(wire.decode(r.headers, r.value).subject for r in canonical)
    assert codes == sorted(f"TL-AFTER-{i}" for i in range(len(POISON))), "each record after a poison one is published"
    got = {}
    for rec in dlq:
        ctx = DeadLetterContext.from_headers(rec.headers)
        got[ctx.source_offset] = (ctx.reason, ctx.field, ctx.message)
    assert len(got) == len(POISON) == len(dlq)
    for (_offset, (reason, field, message)), (what, _, _, want_reason, want_field) in zip(
            sorted(got.items()), POISON, strict=True):
        assert (reason, field) == (want_reason, want_field), what
        assert "Bcc" not in message and "example.com" not in message, "a reason never echoes the value"


def test_a_record_a_producer_dated_before_the_year_1_is_decided_and_the_records_after_it_are_published(
    kafka_bootstrap: str, namespace: str, start_intake: StartIntake
) -> None:
    """On a raw topic left at CreateTime (intake warns, ADR 0028), the broker keeps any timestamp a producer sets:
    a valid dossier and a record that is not JSON, each dated -10**14 and -2**62 ms, are a canonical event and a
    `not_json` dead letter (written at the epoch: ADR 0042), and the valid dossier after each is published. Before,
    the time's conversion to a datetime raised out of validation: every run ended on the first, for ever."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    raw = replace(scoped(RAW[Family.DOSSIER], namespace), config={"message.timestamp.type": "CreateTime"})
    others = [scoped(s, namespace) for s in (*CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP,
                                             *(RAW[f] for f in Family if f is not Family.DOSSIER))]
    asyncio.run(ensure_topics(conn, [raw, *others]))
    assert asyncio.run(described_configs(conn, [raw.name]))[raw.name].values["message.timestamp.type"] == "CreateTime"
    sent: list[tuple[bytes, int | None]] = []
    for i, timestamp in enumerate((-10**14, -2**62)):
        sent += [(dumps(portal_dossier(f"TL-OLD-{i}", status=2)), timestamp), (b"not json", timestamp),
                 (dumps(portal_dossier(f"TL-AFTER-{i}", status=2)), None)]

    async def scenario() -> tuple[list, list, list]:
        producer = clients.producer(conn, client_id="tests", linger_ms=0)
        await producer.start()
        try:
            for value, timestamp in sent:  # one batch each, with its own timestamp
                await (await producer.send(raw.name, value, key=b"02269", headers=HDR, timestamp_ms=timestamp))
        finally:
            await producer.stop()
        kept = await read_all(kafka_bootstrap, raw.name, expect=len(sent), timeout=15)
        canonical = await read_all(kafka_bootstrap, scoped(CANONICAL[Family.DOSSIER], namespace).name, expect=4,
                                   timeout=45)
        return kept, canonical, await read_all(kafka_bootstrap, scoped(DLQ_INTAKE, namespace).name, expect=2,
                                               timeout=15)

    proc = start_intake()
    kept, canonical, dlq = asyncio.run(scenario())
    kept.sort(key=lambda r: r.offset)
    assert [(r.timestamp, r.timestamp_type) for r in (kept[0], kept[4])] == [(-10**14, 0), (-2**62, 0)], (
        "the broker keeps a producer's time at CreateTime")
    assert proc.poll() is None
    codes = sorted(wire.decode(r.headers, r.value).subject for r in canonical)
    assert codes == ["TL-AFTER-0", "TL-AFTER-1", "TL-OLD-0", "TL-OLD-1"]
    letters = sorted((c.source_offset, c.reason, c.source_written_at)
                     for c in (DeadLetterContext.from_headers(r.headers) for r in dlq))
    assert letters == [(offset, Reason.NOT_JSON, 0) for offset in (kept[1].offset, kept[4].offset)]
