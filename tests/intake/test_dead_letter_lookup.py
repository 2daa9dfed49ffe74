"""A dead letter's lookup names (ADR 0038): the event id, subject, dossier code and trace id intake gives the record,
read from it in each shape intake reads, and only in a closed shape that identifies nobody: no control, bidi or
personal data, nothing unbounded, whatever a hostile record holds; `trace` finds a sealed dead letter by them
without its raw record."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from schemas import trace
from schemas.deadletter import DeadLetterContext, Header, Reason
from schemas.events import Family
from schemas.lookup import LOOKUP_PATTERN, TRACE_ID_PATTERN, identifies_nobody, lookup_name
from services.cli.tracer import Tracer
from services.intake import portal
from services.intake.lookup import lookup_names
from tests.samples import canonical_dossier, dossier_code, dumps, portal_dossier

pytestmark = pytest.mark.unit
SOURCE = "/communes/02269/one-stop"
PORTAL_HEADERS = [("commune-code", b"02269")]
HOSTILE = [
    "TL-1\r\nX-Injected: 1", "TL-\u202e1000-LT", "TL\u20661", "TL-1\x00", "TL-1\x1b[31m", "TL-1\x85X",
    "A" * 5000 + "1", "1" * 129, "Nguyễn Thị Lan 1", "NguyenThiLan", "008123456789", "TL-008123456789",
    "0912.345.678", "0912 345 678", "+84912345678", "001-099-012-345", "lan@example.vn1", "12 Lê Lợi, Huế",
    "/citizens/001099012345", "evt 1", "", "   ", "TL-１２３",
    # grouped otherwise, or by '_' or ':' (privacy audit, 2026-12-06: each was kept in clear on a sealed letter)
    "cccd_079_912_345_678", "079912-345678", "TL-0912-345678", "hs-09.12.34.56.78", "0912:345:678", "84_912_345_678",
    # glued to the letters before it (a second audit, 2026-12-07: each was kept in clear too)
    "hs0912.345678", "cccd079912.345678", "HS0799.1234.5678", "a079912_345678",
]
"""What no lookup name may hold: control and bidi characters, text past 128, words (names) without a digit, names,
CCCD, phone and CMND numbers however written, e-mails, addresses, spaces, full-width digits."""


def named(value: dict[str, Any] | bytes | None, headers: list[tuple[str, bytes | None]] | None = None,
          family: Family = Family.DOSSIER) -> dict[str, str]:
    body = dumps(value) if isinstance(value, dict) else value
    return lookup_names(family, body, headers or [])


def test_a_structured_record_is_named_by_its_id_subject_and_the_trace_intake_derives() -> None:
    """Rejected for its status, a structured record keeps its id, dossier code and the trace derived from source and
    id, the one its canonical event would carry."""
    record = {**canonical_dossier("evt-42", dossier_code="TL-251103-0402"), "traceparent": None}
    assert named(with_status(record, 99)) == {
        "lookup_id": "evt-42", "lookup_subject": "TL-251103-0402",
        "lookup_trace": trace.trace_id(trace.derive(SOURCE, "evt-42"))}


def test_a_producers_valid_traceparent_is_the_trace_and_an_invalid_one_is_derived_over() -> None:
    own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert named({**canonical_dossier("e-1"), "traceparent": own})["lookup_trace"] == own[3:35]
    zero = "00-" + "0" * 32 + "-00f067aa0ba902b7-01"  # W3C: invalid, intake derives one in its place
    assert named({**canonical_dossier("e-1"), "traceparent": zero})["lookup_trace"] == trace.trace_id(
        trace.derive(SOURCE, "e-1"))


@pytest.mark.parametrize("header", ["traceparent", "ce_traceparent"])
def test_a_trace_header_is_the_trace_of_a_structured_or_portal_record_that_has_none(header: str) -> None:
    """As intake gives it (`normalise`): a structured record without a `traceparent` attribute, or a portal payload,
    takes its header's; the dead letter's lookup trace was the derived one, and `trace` of the header's trace id
    found the raw record under one trace and its dead letter under another (CI, 2026-12-05)."""
    sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    structured = with_status(canonical_dossier("evt-h"), 99)
    assert named(structured, [(header, sent.encode())])["lookup_trace"] == sent[3:35]
    own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # an attribute of its own wins
    assert named({**structured, "traceparent": own}, [(header, sent.encode())])["lookup_trace"] == own[3:35]
    payload = portal_dossier("TL-251103-0402", status=42)
    assert named(payload, [*PORTAL_HEADERS, (header, sent.encode())])["lookup_trace"] == sent[3:35]
    hiding = "00-0af7651916cd43dd8001099012345319-b7ad6b7169203331-01"  # a CCCD in its hex: no trace, not a derived one
    assert "lookup_trace" not in named(payload, [*PORTAL_HEADERS, (header, hiding.encode())])


def test_a_binary_record_is_named_by_its_headers_and_its_datas_dossier_code() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", b"b-7"), ("ce_source", SOURCE.encode()), ("ce_subject", b"HS-7"),
        ("ce_type", b"vn.communebus.dossier.status-changed.v1")]
    names = named(canonical_dossier("b-7", dossier_code="TL-251103-0007")["data"], headers)
    assert names == {"lookup_id": "b-7", "lookup_subject": "HS-7", "lookup_dossier": "TL-251103-0007",
                     "lookup_trace": trace.trace_id(trace.derive(SOURCE, "b-7"))}


def test_a_portal_record_is_named_by_its_code_and_the_id_and_trace_intake_derives() -> None:
    """The walkthrough's record: a portal payload with a status no one knows; `MaHoSo`, and the uuid and trace its
    event would have had (the commune's portal sync as source); never the applicant's CCCD or phone."""
    payload = portal_dossier("TL-251103-0402", status=42)
    names = named(payload, PORTAL_HEADERS)
    event_id = portal.event_id("02269", payload)
    assert names == {"lookup_id": event_id, "lookup_subject": "TL-251103-0402",
                     "lookup_trace": trace.trace_id(trace.derive(portal.sync_source("02269"), event_id))}
    assert not {"008123456789", "0912345678"} & set(names.values())
    # the id is a hash of the whole payload: kept though its hex holds ten digits in a row (the broker test's first
    # run: "29a1c8ac-66d3-5914-b4f0-8f4859748798" was left out, and the dead letter was not found by its id)
    hashed = portal_dossier("TL-411113-0402", status=42)
    assert named(hashed, PORTAL_HEADERS)["lookup_id"] == portal.event_id("02269", hashed) == (
        "29a1c8ac-66d3-5914-b4f0-8f4859748798")
    # no commune: no id intake would give, nor a trace; the code still
    assert named(payload) == {"lookup_subject": "TL-251103-0402"}


@given(st.datetimes(datetime(2010, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),
       st.integers(0, 9999),
       st.sampled_from(["TL", "000.00.12.H56", "000.00.01.H01", "000.00.00.G01", "H08.02269", "UBND"]))
def test_a_dossier_code_as_the_portal_writes_it_is_always_a_lookup_name(day: datetime, seq: int, agency: str) -> None:
    """`{agency}-{yyMMdd}-{seq}` (DOMAIN.md) of any day since 2010 is kept in clear: no date and sequence looks like a
    phone or a CCCD, as a random run did (`TL-091234-0402`: the broker test's code, CI 2026-12-07). Only a 2000s day
    with its 0 first can (`TL-051225-0402`: ten digits from a 0, as a phone), and is left out."""
    code = dossier_code(seq, agency, day)
    assert named(portal_dossier(code, status=42))["lookup_subject"] == code
    assert "lookup_subject" not in named(portal_dossier(dossier_code(402, day=datetime(2005, 12, 25)), status=42))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_never_reach_a_lookup(hostile: str) -> None:
    """Whichever name a hostile record puts it in (id, subject, dossier code, binary header), it is left out."""
    structured = {**canonical_dossier(hostile, dossier_code=hostile), "subject": hostile}
    binary = [("ce_specversion", b"1.0"), ("ce_id", hostile.encode()), ("ce_subject", hostile.encode()),
              ("ce_source", SOURCE.encode())]
    portal_shape = portal_dossier(hostile)
    for names in (named(structured), named({"dossier_code": hostile}, binary), named(portal_shape, PORTAL_HEADERS)):
        assert hostile.strip() not in names.values() or not hostile.strip(), names
        assert all(re.fullmatch(LOOKUP_PATTERN, v) and identifies_nobody(v) for k, v in names.items()
                   if k != "lookup_trace"), names
        assert re.fullmatch(TRACE_ID_PATTERN, names.get("lookup_trace", "0" * 32)), names
        assert set(names) <= {"lookup_id", "lookup_trace"}  # a portal payload's derived id and its trace only


@pytest.mark.parametrize("source", ["/citizens/001099012345", "/people/lan@example.vn"])
def test_no_trace_is_derived_from_a_source_or_id_that_may_be_a_citizens(source: str) -> None:
    """An unkeyed hash of a citizen's number can be reversed by trying every number: not written."""
    assert "lookup_trace" not in named({**canonical_dossier("evt-1"), "source": source})
    assert "lookup_trace" not in named(canonical_dossier("001099012345"))


def test_a_producers_trace_id_holding_a_citizens_number_is_left_out() -> None:
    parent = "00-00000000000000000000001099012345-00f067aa0ba902b7-01"
    assert "lookup_trace" not in named({**canonical_dossier("evt-1"), "traceparent": parent})


@pytest.mark.parametrize("value", [None, b"", b"\xff\xfe", b"[1, 2]", b'"TL-1"', b"{" * 5000, b"1" * 2_000_000,
                                   b'{"id": {"a": 1}, "subject": ["TL-1"], "data": "TL-1", "source": 7}'])
def test_a_record_it_cannot_read_gets_no_names_and_never_an_error(value: bytes | None) -> None:
    for headers in ([], [("ce_specversion", b"1.0"), ("ce_id", None), ("ce_subject", b"\xff" * 3000)]):
        assert named(value, headers) == {}


@given(st.text(max_size=300))
def test_any_text_is_a_lookup_only_in_the_closed_shape(text: str) -> None:
    """Whatever text: a lookup value is 1-128 of [A-Za-z0-9._:-] with a digit, never a long number."""
    name = lookup_name(text)
    if name is not None:
        assert len(name) <= 128 and name.isascii() and any(c.isdigit() for c in name)
        assert all(c.isalnum() or c in "._:-" for c in name) and re.fullmatch(LOOKUP_PATTERN, name)


def test_a_forged_lookup_header_is_not_read() -> None:
    """On a letter never sealed the producer's headers stay: one named dlq.lookup.* is read only in its shape."""
    context = DeadLetterContext.from_headers([
        (Header.REASON.value, b"not_json"), (Header.SOURCE_TOPIC.value, b"commune.raw.dossier"),
        (Header.SOURCE_PARTITION.value, b"0"), (Header.SOURCE_OFFSET.value, b"1"),
        (Header.LOOKUP_ID.value, "TL-\u202e1".encode()), (Header.LOOKUP_SUBJECT.value, b"008123456789"),
        (Header.LOOKUP_DOSSIER.value, b"TL-1" * 100), (Header.LOOKUP_TRACE.value, b"not a trace id")])
    assert context.lookups() == ()


def sealed_letter(context: DeadLetterContext, offset: int = 3) -> ConsumerRecord[bytes, bytes]:
    """A dead letter as intake writes it sealed: ciphertext, no clear name but its lookup headers."""
    headers = [("dlq.sealed.layout", b"record.v1"), *context.headers()]
    return ConsumerRecord("commune.dlq.intake", 0, offset, 1_764_000_000_000, 0, b"02269", b"\x00sealed", None, 5,
                          9, headers)


def test_trace_finds_a_sealed_dead_letter_by_its_lookup_names_without_its_raw_record() -> None:
    """No raw record offered (an operator, the gateway): found by its dossier code, id and trace id, with its reason
    and field, its names and its trace; not by anything else."""
    payload = portal_dossier("TL-251103-0402", status=42)
    context = DeadLetterContext(
        reason=Reason.UNKNOWN_STATUS, field="TrangThaiHoSo", message="TrangThaiHoSo: not a known status",
        source_topic="commune.raw.dossier", source_partition=0, source_offset=7, rejected_at="2025-11-03T04:02:00Z",
        **named(payload, PORTAL_HEADERS))
    letter = sealed_letter(context)
    assert context.lookup_id and context.lookup_trace
    for query in ("TL-251103-0402", context.lookup_id, context.lookup_trace):
        tracer = Tracer(query)
        tracer.intake_dead_letter(letter)
        [step] = tracer.timeline()
        assert step.stage == "dead letter" and step.what.startswith("unknown_status (TrangThaiHoSo)"), step
        assert "subject TL-251103-0402" in step.what and step.trace == context.lookup_trace
    for query in ("TL-251103", "008123456789", "02269", "unknown_status"):
        tracer = Tracer(query)
        tracer.intake_dead_letter(letter)
        assert tracer.timeline() == []


def with_status(record: dict[str, Any], status: int) -> dict[str, Any]:
    return {**record, "data": {**record["data"], "status": status}}


def test_lookup_headers_are_bounded_in_a_dead_letter() -> None:
    """Four names of 128 characters at most: the dead letter grows by a few hundred bytes, never by what was sent."""
    huge = "TL-1" + "x" * 1_000_000
    record = {**canonical_dossier(huge, dossier_code=huge), "subject": huge}
    names = named(orjson.loads(dumps(record)))
    assert sum(len(v) for v in names.values()) <= 4 * 128
