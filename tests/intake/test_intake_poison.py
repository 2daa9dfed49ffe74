"""Poison records on the real broker: each is a reasoned dead letter and the worker goes on with the next record."""

from __future__ import annotations

import asyncio

import pytest

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, MAX_RECORD_BYTES, RAW
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
