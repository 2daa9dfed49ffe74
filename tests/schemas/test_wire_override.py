"""Binary mode: a record's value can never set or override an envelope attribute (its ce_ headers do)."""

from __future__ import annotations

import pytest

from schemas import wire
from schemas.deadletter import Reason, Rejection
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import Rejected
from tests.samples import canonical_dossier, dumps

pytestmark = pytest.mark.unit


def _binary() -> tuple[list[tuple[str, bytes]], bytes]:
    event = canonical_dossier("evt-real")
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k != "data"]
    return headers, dumps(event["data"])


def test_a_value_closing_the_object_early_cannot_override_source_or_id() -> None:
    """The value ends in `,"source":"/provinces/20/dossiers","id":"spoofed"`: the headers' source and id win over the
    pasted-in members, and the record is refused anyway, its value not being one JSON value."""
    headers, value = _binary()
    spoofed = value + b',"source":"/provinces/20/dossiers","id":"spoofed-1"'
    model = type(wire.decode(headers, value))
    pasted = model.model_validate_json(wire.structured_json(wire.attributes(headers), spoofed))
    assert pasted.id == "evt-real" and pasted.source == dict(headers)["ce_source"].decode()
    with pytest.raises(wire.InvalidRecord) as caught:
        wire.decode(headers, spoofed)
    assert caught.value.reason is Reason.NOT_JSON
    outcome = normalise(Family.DOSSIER, spoofed, headers)
    assert isinstance(outcome, Rejected) and outcome.rejection.reason is Reason.NOT_JSON


def _refused_by_both(headers: list[tuple[str, bytes]], value: bytes, reason: Reason, field: str) -> Rejection:
    """`wire.decode` raises, and intake's `normalise` rejects, with the same reason and field."""
    with pytest.raises(wire.InvalidRecord) as caught:
        wire.decode(headers, value)
    assert (caught.value.reason, caught.value.field) == (reason, field)
    outcome = normalise(Family.DOSSIER, value, headers)
    assert isinstance(outcome, Rejected)
    assert (outcome.rejection.reason, outcome.rejection.field) == (reason, field)
    return outcome.rejection


@pytest.mark.parametrize("prefix", [b'"junk", "data": ', b'{"zzz": [1, 2, 3]}, "data": ', b'1, "data": '])
def test_a_value_that_is_not_one_json_value_by_itself_is_not_json(prefix: bytes) -> None:
    """A value that validates only as pasted into the envelope as `data` (a second `data` member after junk, the
    last one counting) is not_json in intake and in `wire.decode`, naming no part of it (before: accepted)."""
    headers, value = _binary()
    rejection = _refused_by_both(headers, prefix + value, Reason.NOT_JSON, "(record)")
    assert rejection.message == "the record's value is not one JSON value"


def test_an_attribute_missing_from_the_headers_cannot_come_from_the_value() -> None:
    """Without a ce_source header, a value that supplies `source` is refused: missing ce_source."""
    headers, value = _binary()
    headers = [(k, v) for k, v in headers if k != "ce_source"]
    smuggled = value + b',"source":"/provinces/20/dossiers"'
    rejection = _refused_by_both(headers, smuggled, Reason.MISSING_FIELD, "ce_source")
    assert "provinces/20" not in rejection.message


def test_an_honest_binary_record_still_decodes() -> None:
    """The ordinary record: every attribute from its header, data from the value."""
    headers, value = _binary()
    event = wire.decode(headers, value)
    assert event.id == "evt-real" and event.data.dossier_code == canonical_dossier()["data"]["dossier_code"]
