"""Fuzzing notify's rules and templates and metrics' state with valid events carrying hostile content.

Events are what intake accepts from mutated real payloads: whatever intake lets through, notify must render
(one-line subjects) and metrics must count, without an exception.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import wire
from schemas.deadletter import Rejection
from schemas.envelope import Event
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.metrics.exposition import render as exposition
from services.metrics.partition import PartitionState
from services.notify import rules
from services.notify.channels.base import compose
from services.notify.sms import MAX_SEGMENTS
from services.notify.subscribers import Registry
from tests.fuzz.strategies import EXAMPLES, HOSTILE_DATES, HOSTILE_STRINGS, dumps, fuzz_settings
from tests.notify.events import directory
from tests.samples import HDR, canonical_dossier, portal_dossier, storm_scheduled, visit_completed

pytestmark = pytest.mark.unit
TEXT = st.one_of(HOSTILE_STRINGS, st.sampled_from(["Thôn Nà Tàng", "C1", "TL-251101-0001"]))
DATE = st.one_of(HOSTILE_DATES, st.sampled_from(["1975-01-01T00:00:00Z", "2100-12-31T23:59:59Z",
                                                 "2100-12-31T23:59:59+14:00", "19760101000000"]))
STATUS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])


def _dossier(d: dict[str, Any]) -> tuple[Family, bytes, list[tuple[str, bytes]]]:
    extra = {"NgayKetThucXuLy": d["end"], "NgayTra": d["end"]} if d["status"] in (9, 10) else {}
    raw = portal_dossier(d["code"], d["status"], NgayNopHoSo=d["start"], NgayTiepNhan=d["start"], NgayHenTra=d["due"],
                         TenTTHC=d["text"], LyDoTuChoi=d["text"], EmailChuHoSo=d["text"], **extra)
    return Family.DOSSIER, dumps(raw), HDR


def _canonical(d: dict[str, Any]) -> tuple[Family, bytes, list[tuple[str, bytes]]]:
    body = {**canonical_dossier(status=5), "subject": d["code"]}
    body["data"] = {**body["data"], "dossier_code": d["code"], "requested_documents": [d["text"]] * 3,
                    "due_at": d["due"], "applicant": {"email": "a@b.vn", "preferred_locale": "en"}}
    return Family.DOSSIER, dumps(body), []


def _visit(d: dict[str, Any]) -> tuple[Family, bytes, list[tuple[str, bytes]]]:
    v = visit_completed()
    v["data"] = {**v["data"], "village": d["text"], "team_id": d["code"], "started_at": d["start"],
                 "completed_at": d["end"]}
    return Family.MOBILE_TEAM, dumps(v), []


def _storm(d: dict[str, Any]) -> tuple[Family, bytes, list[tuple[str, bytes]]]:
    a = storm_scheduled()
    a["data"] = {**a["data"], "title": d["text"], "target_villages": [d["text"]], "target_clusters": [d["code"]],
                 "starts_at": d["start"]}
    return Family.ANNOUNCEMENT, dumps(a), []


RECORDS = st.builds(
    lambda make, d: make(d), st.sampled_from([_dossier, _canonical, _visit, _storm]),
    st.fixed_dictionaries({"code": TEXT, "text": TEXT, "status": STATUS, "start": DATE, "due": DATE, "end": DATE}))


def accepted(records: list[tuple[Family, bytes, list[tuple[str, bytes]]]]) -> list[Event]:
    outcomes = [normalise(*r) for r in records]
    return [o.event for o in outcomes if isinstance(o, Accepted)]


@fuzz_settings(1000)
@given(st.lists(RECORDS, min_size=1, max_size=3))
def test_notify_rules_templates_and_compose_never_raise(records: list[tuple[Family, bytes, Any]]) -> None:
    """Every notification of an accepted event renders with a one-line subject and an SMS within the segment cap;
    for_record never raises."""
    EXAMPLES["notify: rules, templates, compose, for_record"] += 1
    for event in accepted(records):
        record = wire.encode(event)
        derived = rules.for_record(record.headers, record.value, directory(), Registry(), track=True)
        assert not isinstance(derived, Rejection), derived
        for request in derived.requests:
            message = compose(request, 3)
            assert "\n" not in message.subject and "\r" not in message.subject
            assert message.sms_count.segments <= MAX_SEGMENTS


@fuzz_settings(800)
@given(st.lists(RECORDS, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_metrics_state_applies_any_accepted_events_in_any_order(records: list[tuple[Family, bytes, Any]],
                                                                rng: Any) -> None:
    """Accepted events with far dates and hostile text apply, restore and export without an exception, and
    any order with duplicates gives the same figures."""
    EXAMPLES["metrics: apply, restore, export"] += 1
    events = accepted(records)
    one, other = PartitionState(0, {}), PartitionState(0, {})
    changelog = [c for e in events if (c := one.apply(e)) is not None]
    shuffled = events * 2
    rng.shuffle(shuffled)
    for e in shuffled:
        assert not isinstance(other.apply_safely(e), Rejection)
    assert figures(one) == figures(other)
    restored = PartitionState(0, {})
    for key, value in changelog:
        restored.restore(key, value)
    assert figures(restored) == figures(one)
    exposition([restored], 4102444800.0)  # 2100-01-01: every due date may have passed


def figures(part: PartitionState) -> dict[str, dict[Any, int]]:
    return {c: {k: v for k, v in t.counts.items() if v} for c, t in part.communes.items()}
