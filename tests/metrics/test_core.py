"""Pure core of the metrics service: state merges, totals, exposition, snapshots (no Kafka)."""

from __future__ import annotations

import itertools
import random
import re
from typing import TypedDict

import pytest
from structlog.testing import capture_logs

from schemas import wire
from schemas.envelope import Event
from schemas.snapshot import decode_snapshot
from services.metrics import telemetry
from services.metrics.aggregate import DURATION_BUCKETS_S, Key
from services.metrics.exposition import render
from services.metrics.partition import PartitionState
from services.metrics.snapshots import snapshot
from services.metrics.worker import _snapshot_record
from tests.metrics.events import T0, at, broadcast, dossier, scheduled, training, visit_completed, visit_started

pytestmark = pytest.mark.unit
C = "02269"  # Tuyên Quang (08)
LATER = (T0.timestamp() + 400 * 86400)  # long after every due date below


class Figures(TypedDict):
    counts: dict[Key, int]
    overdue: int


def fresh(*events: Event) -> PartitionState:
    part = PartitionState(0, {})
    for e in events:
        part.apply(e)
    return part


def figures(part: PartitionState, now: float = LATER) -> Figures:
    t = part.communes[C]
    return {"counts": {k: v for k, v in t.counts.items() if v}, "overdue": t.overdue(now)}


def lifecycle(code: str = "D-1", end_hours: float = 30) -> list[Event]:
    return [
        dossier(C, code, 1, f"{code}-1", 0),
        dossier(C, code, 2, f"{code}-2", 1, fees=True),
        dossier(C, code, 4, f"{code}-4", 2, fees=True, paid_online=True),
        dossier(C, code, 9, f"{code}-9", end_hours, fees=True, digitised=True),
    ]


def test_counting_follows_the_domain_rules() -> None:
    """Registered is not received; accepted is received and open; processed is completed, not open."""
    part = fresh(dossier(C, "A", 1, "a1", 0))
    assert figures(part)["counts"] == {}
    part.apply(dossier(C, "A", 2, "a2", 1))
    assert figures(part)["counts"] == {("received", "counter"): 1, ("open",): 1}
    assert figures(part)["overdue"] == 1  # open, due T0+3d, read a year later
    assert part.communes[C].overdue(T0.timestamp()) == 0
    part.apply(dossier(C, "A", 9, "a9", 26))
    counts = figures(part)["counts"]
    assert counts[("completed", "counter", "early")] == 1 and ("open",) not in counts
    assert figures(part)["overdue"] == 0
    part.apply(dossier(C, "R", 3, "r3", 1))
    assert figures(part)["counts"][("received", "counter")] == 1  # rejected at intake is not received


@pytest.mark.parametrize(("end_hours", "expected"), [(24, "early"), (72 + 5, "on_time"), (72 + 24, "late")])
def test_timeliness_by_vietnam_calendar_day(end_hours: float, expected: str) -> None:
    """Completion before, on or after the due day is early, on time or late."""
    part = fresh(*lifecycle(end_hours=end_hours))
    assert figures(part)["counts"][("completed", "counter", expected)] == 1


def test_every_order_of_a_lifecycle_gives_the_same_figures() -> None:
    """Out-of-order delivery (all 24 permutations) changes neither the state nor the totals."""
    events = lifecycle()
    expected = figures(fresh(*events))
    for order in itertools.permutations(events):
        assert figures(fresh(*order)) == expected
    assert expected["counts"][("paid_online",)] == 1 and expected["counts"][("digitised",)] == 1


def test_duplicates_count_once_and_change_nothing() -> None:
    """A repeated event id is applied once: the second delivery returns no changelog record."""
    e = dossier(C, "A", 2, "a2", 1)
    part = fresh(e)
    before = figures(part)
    assert part.apply(e) is None
    assert figures(part) == before


def test_older_event_does_not_overwrite_newer_state() -> None:
    """An in-progress event older than the completion leaves the dossier completed (not open again)."""
    part = fresh(dossier(C, "A", 9, "a9", 30))
    part.apply(dossier(C, "A", 4, "a4", 2, paid_online=True, fees=True))
    counts = figures(part)["counts"]
    assert ("open",) not in counts and counts[("completed", "counter", "early")] == 1
    assert counts[("paid_online",)] == 1  # facts that only become true are still taken from older events


def test_overdue_follows_the_clock_and_due_date_changes() -> None:
    """The overdue gauge is recomputed when time passes a due date and when a dossier's due date moves."""
    part = fresh(dossier(C, "A", 2, "a2", 1, due_days=1), dossier(C, "B", 2, "b2", 1, due_days=2))
    t = part.communes[C]
    day = 86400
    assert [t.overdue(T0.timestamp() + d * day + 1) for d in (0, 1, 2)] == [0, 1, 2]
    part.apply(dossier(C, "A", 5, "a5", 3, due_days=5))  # extra documents: due date moved
    assert t.overdue(T0.timestamp() + 2 * day + 1) == 1


def test_random_shuffles_with_duplicates_match_one_ordered_pass() -> None:
    """Many dossiers, shuffled and partly duplicated, give exactly the ordered-pass totals."""
    events = [e for i in range(40) for e in lifecycle(f"D{i}", end_hours=20 + 3 * i)]
    expected = figures(fresh(*events))
    rng = random.Random(7)
    for _ in range(5):
        mixed = events + rng.sample(events, 30)
        rng.shuffle(mixed)
        assert figures(fresh(*mixed)) == expected


def test_mobile_team_and_announcement_totals() -> None:
    """Completed visits count once with their reach; broadcasts end as the newest outcome per cluster."""
    part = fresh(
        visit_completed(C, "V1", "v1c", 8, 10, 12, 3, 2), visit_started(C, "V1", "v1s", 12),  # start after: ignored
        visit_completed(C, "V1", "v1c", 8, 10, 12, 3, 2), training(C, "S1", "s1", 5, 30),
        scheduled(C, "A1", "a1", 0, starts_hours=1),
        broadcast(C, "A1", "C1", "failed", "b1", 1.5),
        broadcast(C, "A1", "C1", "completed", "b2", 2.5, started_hours=2),
        broadcast(C, "A1", "C2", "started", "b3", 1.25),
    )
    c = figures(part)["counts"]
    assert c[("visits",)] == 1 and c[("households",)] == 10 and c[("accounts",)] == 2
    assert c[("trainings",)] == 1 and c[("attendees",)] == 30
    assert c[("scheduled", "crop_disease")] == 1
    assert c[("broadcast", "crop_disease", "completed")] == 1 and ("broadcast", "crop_disease", "failed") not in c
    assert c[("delay_sum",)] == 900 + 3600  # C2 started 15 min late, C1 first started an hour late


def test_restore_from_changelog_rebuilds_identical_totals() -> None:
    """Replaying the changelog records `apply` returned (with superseded versions) gives the same figures."""
    events = [e for i in range(10) for e in lifecycle(f"D{i}")] + [scheduled(C, "A1", "a1", 0),
                                                                   broadcast(C, "A1", "C1", "completed", "b", 2)]
    live = PartitionState(0, {})
    log = [out for e in events if (out := live.apply(e)) is not None]
    restored = PartitionState(0, {})
    for key, value in log:
        restored.restore(key, value)
    assert figures(restored) == figures(live)
    assert restored.store == live.store


def test_exposition_labels_are_codes_and_enums_only() -> None:
    """/metrics carries province and commune codes and enums; no dossier code; histogram buckets cumulate."""
    part = fresh(*lifecycle("TL-251101-0001"), dossier(C, "B", 2, "b2", 1, channel="online"))
    text = render([part], LATER)
    assert "TL-251101" not in text
    assert 'commune_dossiers_received_total{province="08",commune="02269",channel="online"} 1' in text
    assert 'commune_dossiers_open{province="08",commune="02269"} 1' in text
    assert 'commune_dossiers_on_time_ratio{province="08",commune="02269"} 1.0' in text
    assert 'commune_dossiers_online_ratio{province="08",commune="02269"} 0.5' in text
    buckets = [int(v) for v in re.findall(r'commune_dossier_processing_duration_seconds_bucket\{[^}]*\} (\d+)', text)]
    assert len(buckets) == len(DURATION_BUCKETS_S) + 1 and buckets == sorted(buckets) and buckets[-1] == 1
    labels = set(re.findall(r'(\w+)="', text))
    assert labels <= {"province", "commune", "channel", "timeliness", "category", "outcome", "le"}


def test_snapshot_event_round_trips_through_the_wire() -> None:
    """A commune snapshot encodes in binary mode (key = commune) and decodes to the same figures."""
    part = fresh(*lifecycle(), dossier(C, "B", 2, "b2", 1, channel="online"))
    snap = snapshot(C, part.communes[C], at(24 * 400))
    rec = wire.encode(snap)
    assert rec.key == C.encode()
    back = decode_snapshot(rec.headers, rec.value)
    assert back == snap
    assert (back.data.received, back.data.completed, back.data.open, back.data.overdue) == (2, 1, 1, 1)
    assert back.data.online_rate == 0.5 and back.data.paid_online_rate == 1.0


def test_paid_online_counts_only_dossiers_with_fees_so_its_rate_stays_a_rate() -> None:
    """Two dossiers paid online without fees and one with: the rate is paid online / with fees = 1/1, and the
    snapshot is valid (it was 3/1: CommuneIndicators refused 3.0, and the snapshot loop crashed the worker, again
    after every restart)."""
    part = fresh(dossier(C, "A", 2, "a2", 1, paid_online=True), dossier(C, "B", 2, "b2", 1, paid_online=True),
                 dossier(C, "F", 2, "f2", 1, paid_online=True, fees=True))
    counts = figures(part)["counts"]
    assert counts[("paid_online",)] == 1 and counts[("with_fees",)] == 1
    assert snapshot(C, part.communes[C], at(24)).data.paid_online_rate == 1.0


def test_a_commune_whose_figures_make_no_valid_snapshot_is_skipped_and_counted() -> None:
    """Whatever the figures (a bug elsewhere could make one negative), one commune's snapshot failing is logged
    and counted, and the others are written."""
    part = fresh(dossier(C, "A", 2, "a2", 1, fees=True))
    part.communes[C].counts[("with_fees",)] = -1  # figures no snapshot accepts
    before = telemetry.SNAPSHOT_FAILURES._value.get()
    with capture_logs() as logs:
        assert _snapshot_record(C, part.communes[C], at(24)) is None
    assert telemetry.SNAPSHOT_FAILURES._value.get() == before + 1
    assert [(e["event"], e["commune"]) for e in logs] == [("metrics.snapshot_invalid", C)]


def test_apply_safely_returns_internal_error_and_leaves_the_store_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug met by one event (a merge that raises) is an internal_error Rejection: the store and totals are
    unchanged, and the next event applies as usual."""
    from schemas.deadletter import Reason, Rejection
    from services.metrics import handlers

    first, second = lifecycle("D-9")[:2]
    part = fresh(first)
    before = (dict(part.store), figures(part))
    entry = handlers.HANDLERS[second.type]
    assert entry is not None

    def broken(old: object, event: object) -> None:
        raise ZeroDivisionError("D-9")

    monkeypatch.setitem(handlers.HANDLERS, second.type, entry._replace(merge=broken))
    out = part.apply_safely(second)
    assert isinstance(out, Rejection) and out.reason is Reason.INTERNAL_ERROR and "D-9" not in out.message
    assert (dict(part.store), figures(part)) == before
    monkeypatch.undo()
    assert isinstance(part.apply_safely(second), tuple)
    assert figures(part) == figures(fresh(first, second))
