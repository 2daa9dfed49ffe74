"""`schemas.wire.decode`: whatever is wrong with a canonical record raises one named error with a reason and field."""

from __future__ import annotations

import pytest

from schemas import wire
from schemas.deadletter import Reason
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from tests.samples import canonical_dossier, dumps

pytestmark = pytest.mark.unit


def _record() -> wire.KafkaRecord:
    outcome = normalise(Family.DOSSIER, dumps(canonical_dossier("evt-w")))
    assert isinstance(outcome, Accepted)
    return wire.encode(outcome.event)


def _with_header(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in headers]


def test_a_valid_record_decodes() -> None:
    """The round trip still gives the event."""
    rec = _record()
    assert wire.decode(rec.headers, rec.value).id == "evt-w"


@pytest.mark.parametrize(("case", "reason", "field"), [
    ("null value", Reason.NOT_JSON, "(record)"),
    ("non-UTF-8 ce_ header", Reason.NOT_UTF8, "ce_*"),
    ("unknown type", Reason.UNKNOWN_EVENT_TYPE, "ce_type"),
    ("no type", Reason.UNKNOWN_EVENT_TYPE, "ce_type"),
    ("invalid JSON", Reason.NOT_JSON, "(record)"),
    ("a JSON array", Reason.INVALID_FIELD, "data"),
    ("a year-9999 ce_time", Reason.VALUE_OUT_OF_RANGE, "time"),
    ("a CR/LF in ce_subject", Reason.INVALID_FIELD, "subject"),
    ("a missing field", Reason.MISSING_FIELD, "data.dossier_code"),
    ("a null ce_id header", Reason.MISSING_FIELD, "ce_id"),
    ("a null header of another ce_ name", Reason.MISSING_FIELD, "ce_*"),
])
def test_every_bad_record_raises_invalid_record_with_reason_and_field(case: str, reason: Reason, field: str) -> None:
    """Null value, bad headers, unknown type, bad JSON, invalid event: each one InvalidRecord(reason, field)."""
    rec = _record()
    headers, value = rec.headers, rec.value
    bad: dict[str, tuple[list[tuple[str, bytes]], bytes | None]] = {
        "null value": (headers, None),
        "non-UTF-8 ce_ header": (_with_header(headers, "ce_source", b"/communes/\xff\xfe"), value),
        "unknown type": (_with_header(headers, "ce_type", b"vn.communebus.dossier.deleted.v9"), value),
        "no type": ([h for h in headers if h[0] != "ce_type"], value),
        "invalid JSON": (headers, b"{nope"),
        "a JSON array": (headers, b"[1, 2]"),
        "a year-9999 ce_time": (_with_header(headers, "ce_time", b"9999-12-31T23:59:59-14:00"), value),
        "a CR/LF in ce_subject": (_with_header(headers, "ce_subject", b"TL-1\r\nBcc: x"), value),
        "a missing field": (headers, value.replace(b'"dossier_code"', b'"dossier_cod"')),
        # Kafka allows a header without a value (aiokafka: None): it raised AttributeError, out of every decode
        "a null ce_id header": (_with_header(headers, "ce_id", None), value),  # type: ignore[arg-type]
        "a null header of another ce_ name": ([*headers, ("ce_012345678901", None)], value),  # type: ignore[list-item]
    }
    with pytest.raises(wire.InvalidRecord) as caught:
        wire.decode(*bad[case])
    assert (caught.value.reason, caught.value.field) == (reason, field), case
    assert "Bcc" not in str(caught.value) and "\xff" not in str(caught.value)


def test_a_null_ce_header_is_a_reasoned_rejection_everywhere() -> None:
    """Intake dead-letters it with its reason (not `internal_error`); the slim views refuse it as the full decode."""
    from services.intake.outcome import Rejected
    from services.metrics import decoding
    rec = _record()
    headers = _with_header(rec.headers, "ce_time", None)  # type: ignore[arg-type]
    outcome = normalise(Family.DOSSIER, rec.value, headers)
    assert isinstance(outcome, Rejected)
    assert (outcome.problems[0].reason, outcome.problems[0].field) == (Reason.MISSING_FIELD, "ce_time")
    for decode in (decoding.slim, decoding.fast):
        with pytest.raises(wire.InvalidRecord):
            decode(headers, rec.value)


def test_unknown_event_type_is_an_invalid_record() -> None:
    """Callers catching the older UnknownEventType still do; new callers catch InvalidRecord only."""
    assert issubclass(wire.UnknownEventType, wire.InvalidRecord) and issubclass(wire.InvalidRecord, ValueError)


def test_null_headers_elsewhere_are_read_as_absent_or_empty() -> None:
    """Found by the review helper: a portal record's null `source` header was an internal_error; a dead letter that
    kept a null header broke `commune-bus dlq` and the trace."""
    from schemas.deadletter import DeadLetterContext
    from services.cli.deadletters import source_of
    from tests.samples import HDR, portal_dossier
    outcome = normalise(Family.DOSSIER, dumps(portal_dossier()), [*HDR, ("source", None)])  # type: ignore[list-item]
    assert isinstance(outcome, Accepted) and outcome.event.source == "/communes/02269/portal-sync"
    context = DeadLetterContext(reason=Reason.NOT_JSON, field="(record)", message="m", source_topic="t",
                                source_partition=1, source_offset=2, rejected_at="2025-11-03T01:00:00Z")
    kept = [*context.headers(), ("dlq.from-the-sender", None), ("ce_source", None)]
    assert DeadLetterContext.from_headers(kept) == context  # type: ignore[arg-type]
    assert source_of(kept, b'{"source": "/communes/02269/app"}') == "/communes/02269/app"  # type: ignore[arg-type]


def test_an_invalid_records_field_never_repeats_a_member_name_that_is_no_plain_identifier() -> None:
    """A canonical record with an unknown member named after a person (notify and metrics log the field): the field
    says `<member>`, never the name or the phone in it (the audit found the location repeated unfiltered)."""
    record = _record()
    value = record.value.replace(b'{"dossier_code"', b'{"Nguy\\u1ec5n V\\u0103n An 0912345678":1,"dossier_code"', 1)
    assert value != record.value
    with pytest.raises(wire.InvalidRecord) as caught:
        wire.decode(record.headers, value)
    assert caught.value.field == "data.<member>" and "0912345678" not in str(caught.value)
