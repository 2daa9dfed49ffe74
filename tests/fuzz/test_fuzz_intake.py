"""Fuzzing intake's `normalise` (every family and shape) and what the pipeline does with what it accepts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from schemas import wire
from schemas.deadletter import Reason
from schemas.events import FAMILY_OF_TYPE, Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Outcome, Rejected
from services.metrics.partition import PartitionState
from services.notify import rules
from services.notify.channels.base import compose
from services.notify.subscribers import Registry, Subscriber
from tests.fuzz.strategies import (
    EVENTS,
    EXAMPLES,
    HOSTILE_STRINGS,
    SECRET,
    dumps,
    fuzz_settings,
    mutated,
)
from tests.notify.events import directory
from tests.samples import canonical_dossier, portal_dossier, storm_scheduled, visit_completed

pytestmark = pytest.mark.unit
CROSS_FIELD = {Reason.IMPOSSIBLE_DATES, Reason.MISSING_FIELD, Reason.PROVINCE_MISMATCH, Reason.UNKNOWN_COMMUNE,
               Reason.UNKNOWN_PROVINCE}
CODES = {"commune", "province"}
"""What a schema-valid event may still be rejected for: rules across fields, and the official code lists (the
schemas describe commune and province codes in words only: "5 digits", "2 digits")."""
WEBHOOK_ALL = Registry(subscribers=[Subscriber(name="all", url="http://127.0.0.1:1/hook", secret=SecretStr("s"))])


def downstream(outcome: Outcome) -> None:
    """An accepted event survives the wire, every notify rule and template, and metrics; a rejection hides values."""
    if isinstance(outcome, Rejected):
        assert outcome.rejection.reason is not Reason.INTERNAL_ERROR, outcome.rejection.message
        assert all(SECRET not in p.message for p in outcome.problems), outcome.problems
        return
    event = outcome.event
    record = wire.encode(event)
    assert wire.decode(record.headers, record.value) == event
    for request in rules.for_event(event, directory(), WEBHOOK_ALL):
        compose(request, 3)
    PartitionState(0, {}).apply(event)


def checked(family: Family, value: bytes, headers: list[tuple[str, bytes]] | None = None,
            max_bytes: int = 1024 * 1024) -> Outcome:
    outcome = normalise(family, value, headers or [], max_bytes)
    assert isinstance(outcome, Accepted | Rejected)
    downstream(outcome)
    return outcome


SEALED_ON_INPUT = ("data.applicant", "data.applicant.subject")
"""The schema allows the sealed applicant (canonical topics) and the opened one (webhooks to a subscriber entitled to
personal data); a raw record must send it clear, without a subject (ADR 0015)."""


def _blank(event: Any, path: str) -> bool:
    """The drawn value at `path` is blank: the models strip whitespace before `min_length`, which the published
    schemas (`minLength` only) cannot say without a breaking change."""
    value = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return isinstance(value, str) and not value.strip()


@fuzz_settings(1000)
@given(EVENTS)
def test_events_drawn_from_the_json_schemas_are_accepted_or_rejected_across_fields(drawn: tuple[str, Any]) -> None:
    """Instances of each committed JSON Schema: accepted, or rejected only for what a schema cannot say (dates in
    order, status-required dates, official codes); both the structured and the binary form."""
    EXAMPLES["normalise: schema instances (structured + binary)"] += 1
    type_name, event = drawn
    family = FAMILY_OF_TYPE[type_name]
    outcome = checked(family, dumps(event))
    if "type" not in event:  # optional in the schema (the model has a default) but a structured record must name it
        assert isinstance(outcome, Rejected) and outcome.rejection.field == "type"
        outcome = checked(family, dumps({**event, "type": type_name}))
    if isinstance(outcome, Rejected):
        assert all(p.reason in CROSS_FIELD or p.field in CODES or _blank(event, p.field) or p.field in SEALED_ON_INPUT
                   for p in outcome.problems), outcome.problems
    attrs = {k: v for k, v in event.items() if k in wire.ATTRIBUTES and isinstance(v, str)}
    headers = [(f"ce_{k}", v.encode()) for k, v in {**attrs, "specversion": "1.0", "type": type_name}.items()]
    binary = checked(family, dumps(event.get("data")), headers)
    assert isinstance(binary, Accepted) == isinstance(outcome, Accepted)


BASES: list[tuple[Family, dict[str, Any]]] = [
    (Family.DOSSIER, portal_dossier()), (Family.DOSSIER, portal_dossier(status=10)),
    (Family.DOSSIER, canonical_dossier()), (Family.MOBILE_TEAM, visit_completed()),
    (Family.ANNOUNCEMENT, storm_scheduled()),
]


@fuzz_settings(2000)
@given(mutated(BASES), st.booleans(),
       st.sampled_from([[("commune-code", b"02269")], [("commune-code", b"\xff\xfe")], [],
                        [("commune-code", b"9" * 5000)], [("commune-code", b"02269"), ("source", b"\r\n\xff")]]))
def test_mutated_real_payloads_never_raise(drawn: tuple[Family, dict[str, Any]], big: bool,
                                           headers: list[tuple[str, bytes]]) -> None:
    """Real portal and canonical payloads with hostile members (control characters, huge numbers, year 1 and 9999,
    300-deep nesting, million-item lists): accepted or rejected with a reason, never an exception."""
    EXAMPLES["normalise: mutated real payloads"] += 1
    family, obj = drawn
    checked(family, dumps(obj), headers, max_bytes=16 * 1024 * 1024 if big else 1024 * 1024)


@fuzz_settings(800)
@given(st.sampled_from(BASES), st.lists(st.tuples(st.sampled_from(["ce_specversion", "ce_type", "ce_id", "ce_time",
                                                                     "ce_commune", "ce_source", "ce_x"]),
                                                    st.binary(max_size=20) | HOSTILE_STRINGS.map(str.encode)),
                                          max_size=4), st.binary(max_size=200))
def test_binary_records_with_hostile_headers_and_bytes_never_raise(
        base: tuple[Family, dict[str, Any]], extra: list[tuple[str, bytes]], noise: bytes) -> None:
    """Binary-mode records with garbage ce_* headers and values (non-UTF-8, truncated): a reason, never a raise."""
    EXAMPLES["normalise: binary headers and bytes"] += 1
    family, obj = base
    value = dumps(obj.get("data", obj))
    headers = [("ce_specversion", b"1.0"), *extra]
    checked(family, value, headers)
    checked(family, value[: len(noise) % max(1, len(value))] + noise, headers)
    checked(family, noise, [])
