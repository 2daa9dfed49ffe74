"""W3C traceparent validity (`schemas.trace.is_valid`): the whole value, nothing after it; an event's invalid one is
replaced by the derived trace."""

from __future__ import annotations

import orjson
import pytest

from schemas import trace, wire
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from tests.samples import HDR, canonical_dossier, portal_dossier

pytestmark = pytest.mark.unit
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("value", "valid"), [
    (VALID, True),
    (VALID + "\n", False),  # `re.match` with `$` took it: a line break into ce_traceparent
    (VALID + "\r\n", False),
    (VALID.upper(), False),
    ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", False),
    (" " + VALID, False),
])
def test_a_traceparent_is_valid_only_as_a_whole(value: str, valid: bool) -> None:
    assert trace.is_valid(value) is valid


ZERO_TRACE = "00-" + "0" * 32 + "-00f067aa0ba902b7-01"
ZERO_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"


@pytest.mark.parametrize("invalid", [ZERO_TRACE, ZERO_PARENT, "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
                                     VALID.upper(), "01" + VALID[2:], VALID + "-future", "not a trace", ""])
@pytest.mark.parametrize("binary", [False, True])
def test_an_all_zero_traceparent_is_replaced_by_the_derived_one(invalid: str, binary: bool) -> None:
    """W3C declares all-zero trace and parent ids invalid, and a receiver treats a traceparent it cannot parse as
    absent: intake publishes the trace derived from source and id, as for a record without one, structured or
    binary (before: the zeros were published and `trace_id` found none; upper-case hex, another version or garbage
    refused the whole event as invalid_field traceparent, which both CloudEvents SDKs read)."""
    record = {**canonical_dossier("evt-zero"), "traceparent": invalid}
    if binary:
        as_wire = wire.encode(normalise(Family.DOSSIER, orjson.dumps(canonical_dossier("evt-zero"))).event)  # type: ignore[union-attr]
        headers = [(k, invalid.encode() if k == "ce_traceparent" else v) for k, v in as_wire.headers]
        outcome = normalise(Family.DOSSIER, as_wire.value, headers)
    else:
        outcome = normalise(Family.DOSSIER, orjson.dumps(record))
    assert isinstance(outcome, Accepted)
    derived = trace.derive(record["source"], "evt-zero")
    assert outcome.event.traceparent == derived and trace.is_valid(derived)
    assert "traceparent" not in outcome.event.model_fields_set  # as if sent without one
    assert dict(wire.encode(outcome.event).headers)["ce_traceparent"] == derived.encode()


def test_a_valid_traceparent_is_kept() -> None:
    """The replacement touches only the invalid: a caller's valid trace stays the event's."""
    outcome = normalise(Family.DOSSIER, orjson.dumps({**canonical_dossier(), "traceparent": VALID}))
    assert isinstance(outcome, Accepted) and outcome.event.traceparent == VALID


@pytest.mark.parametrize("header", ["traceparent", "ce_traceparent"])
@pytest.mark.parametrize(("sent", "kept"), [(VALID, True), (VALID.upper(), False), (ZERO_TRACE, False),
                                            (VALID + "\r\nX: y", False)])
def test_a_portal_record_takes_the_trace_of_its_header(header: str, sent: str, kept: bool) -> None:
    """A portal-shape record on Kafka carries its sender's trace in a `traceparent` (or `ce_traceparent`) record
    header, as the gateway's portal records do in the HTTP header: it was ignored and the trace derived (walkthrough,
    2026-12-05). One that is not valid is absent, as on every other path: the derived trace, not a refusal."""
    value = orjson.dumps(portal_dossier())
    without = normalise(Family.DOSSIER, value, HDR)
    outcome = normalise(Family.DOSSIER, value, [*HDR, (header, sent.encode())])
    assert isinstance(outcome, Accepted) and isinstance(without, Accepted)
    assert outcome.event.traceparent == (sent if kept else without.event.traceparent)
    assert ("traceparent" in outcome.event.model_fields_set) is kept
    assert outcome.event.id == without.event.id  # the header is not part of what identifies the record


OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("header", ["traceparent", "ce_traceparent"])
def test_a_structured_event_without_the_attribute_takes_the_trace_of_its_header(header: str) -> None:
    """A structured record whose JSON carries no `traceparent` follows its header's (as `trace.py` says intake reads
    it); an attribute of its own wins over the header; an invalid header is absent (the derived trace). It kept the
    derived trace, and `trace <the header's trace id>` found the raw record but not the event (CI, 2026-12-05)."""
    record = canonical_dossier("evt-h")
    derived = normalise(Family.DOSSIER, orjson.dumps(record))
    taken = normalise(Family.DOSSIER, orjson.dumps(record), [(header, OTHER.encode())])
    own = normalise(Family.DOSSIER, orjson.dumps({**record, "traceparent": VALID}), [(header, OTHER.encode())])
    bad = normalise(Family.DOSSIER, orjson.dumps(record), [(header, OTHER.upper().encode())])
    assert all(isinstance(o, Accepted) for o in (derived, taken, own, bad))
    assert taken.event.traceparent == OTHER  # type: ignore[union-attr]
    assert own.event.traceparent == VALID  # type: ignore[union-attr]
    assert bad.event.traceparent == derived.event.traceparent != OTHER  # type: ignore[union-attr]
    assert dict(wire.encode(taken.event).headers)["ce_traceparent"] == OTHER.encode()  # type: ignore[union-attr]
