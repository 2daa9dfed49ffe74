"""Pure core of the metrics service: state merges, totals, exposition, snapshots (no Kafka)."""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import orjson
import pytest
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from schemas import wire
from schemas.envelope import Event
from schemas.events import Family
from schemas.snapshot import decode_snapshot
from schemas.topics import CANONICAL
from services.common.settings import KafkaConnection
from services.metrics import telemetry
from services.metrics.aggregate import DURATION_BUCKETS_S, Key
from services.metrics.exposition import render
from services.metrics.ownership import Ownership
from services.metrics.partition import PartitionState
from services.metrics.publishing import _snapshot_record
from services.metrics.snapshots import snapshot
from services.metrics.state import FUTURE_MARGIN, believed_until
from services.metrics.topics import Names
from tests.metrics.events import (
    T0,
    at,
    broadcast,
    dossier,
    fetch,
    scheduled,
    training,
    visit_completed,
    visit_started,
)

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
    """The overdue gauge is recomputed when time passes the end of a due day and when a dossier's due date moves."""
    part = fresh(dossier(C, "A", 2, "a2", 1, due_days=1), dossier(C, "B", 2, "b2", 1, due_days=2))
    t = part.communes[C]
    day, midnight = 86400, T0.timestamp() + 16 * 3600  # T0 is Monday 08:00 in Vietnam; A due Tuesday 08:00
    assert [t.overdue(midnight + d * day) for d in (0, 1, 2)] == [0, 1, 2]  # Tuesday, Wednesday, Thursday 00:00
    part.apply(dossier(C, "A", 5, "a5", 3, due_days=5))  # extra documents: due date moved
    assert t.overdue(midnight + 2 * day) == 1


def test_the_newest_completion_gives_the_timeliness_and_duration() -> None:
    """A dossier processed late (day 5) whose returned event corrects the end to day 3 counts once, on time, with the
    corrected duration, in every order of the events (each test dossier had one completion, so taking the older one
    went unseen; mutation test)."""
    processed = dossier(C, "D-1", 9, "e-9", 96)  # ended at T0+96 h: a day after the due day (T0+3 d), late
    returned = dossier(C, "D-1", 10, "e-10", 98, end_hours=72 + 5)  # ended on the due day: on time
    reopened = dossier(C, "D-1", 4, "e-4", 99)  # a later event that is no completion keeps the newest one too
    for order in itertools.permutations((processed, returned, reopened)):
        counts = figures(fresh(dossier(C, "D-1", 2, "e-2", 0), *order))["counts"]
        assert counts[("completed", "counter", "on_time")] == 1 and ("completed", "counter", "late") not in counts
        assert counts[("duration_sum",)] == (72 + 5) * 3600


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
    assert 'commune_dossiers_received{province="08",commune="02269",channel="online"} 1' in text
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

    def broken(old: object, event: object, at: int) -> None:
        raise ZeroDivisionError("D-9")

    monkeypatch.setitem(handlers.HANDLERS, second.type, entry._replace(merge=broken))
    out = part.apply_safely(second)
    assert isinstance(out, Rejection) and out.reason is Reason.INTERNAL_ERROR and "D-9" not in out.message
    assert (dict(part.store), figures(part)) == before
    monkeypatch.undo()
    assert isinstance(part.apply_safely(second), tuple)
    assert figures(part) == figures(fresh(first, second))


def typo_year(event: Event, year: int = 2052) -> Event:
    """`event` with its year mistyped (intake accepts any time up to 2100)."""
    return event.model_copy(update={"time": event.time.replace(year=year)})


def test_an_event_dated_beyond_the_clock_loses_to_every_believable_one() -> None:
    """An in-progress event with its year typed 2052 does not keep the returned dossier open and overdue: past
    the clock's FUTURE_MARGIN an event time is not believed, so it loses to the real events in either order;
    its sticky facts still count."""
    now = at(24 * 30).timestamp()
    in_progress = dossier(C, "D-1", 4, "e-typo", 2, paid_online=True, fees=True)
    real = [dossier(C, "D-1", 2, "e-2", 1), dossier(C, "D-1", 10, "e-done", 30)]
    expected = figures(fresh(in_progress, *real), now)  # as if the typo were any older event
    assert ("open",) not in expected["counts"] and expected["overdue"] == 0
    for order in itertools.permutations([typo_year(in_progress), *real]):
        part = PartitionState(0, {})
        for e in order:
            part.apply(e, believed_until(now))
        assert figures(part, now) == expected


def test_an_event_a_second_past_the_margin_is_not_believed() -> None:
    """FUTURE_MARGIN is the margin, to the second: an event dated a second beyond it does not move the commune's
    last-event time (only the margin's own edge was tested: a margin half an hour longer went unseen; mutation
    test)."""
    now = at(24 * 30).timestamp()
    part = PartitionState(0, {})
    beyond = datetime.fromtimestamp(now, UTC) + FUTURE_MARGIN + timedelta(seconds=1)
    part.apply(dossier(C, "D-1", 2, "e-1", 1).model_copy(update={"time": beyond}), believed_until(now))
    assert part.communes[C].last_event_us == 0


def test_events_within_one_second_are_ordered_by_their_microseconds() -> None:
    """A dossier withdrawn 0.3 s after an in-progress event is withdrawn, in either order: ordering times keep the
    fraction of a second (every test event fell on a whole second, so ordering it backwards went unseen; mutation
    test)."""
    second = 1 / 3600
    in_progress = dossier(C, "D-1", 4, "e-z", 1 + 0.2 * second)  # its id sorts last: the time alone must decide
    withdrawn = dossier(C, "D-1", 7, "e-a", 1 + 0.5 * second)
    assert withdrawn.time - in_progress.time == timedelta(milliseconds=300)
    for order in ((in_progress, withdrawn), (withdrawn, in_progress)):
        counts = figures(fresh(dossier(C, "D-1", 2, "e-2", 0), *order))["counts"]
        assert ("open",) not in counts and counts[("received", "counter")] == 1


def test_the_last_event_time_is_the_newest_believable_event_so_commune_silent_can_fire() -> None:
    """A future-dated event does not move the commune's last-event time (it sat in 2052, so CommuneSilent never
    fired again); an event within FUTURE_MARGIN of the clock (a sender's clock a little fast) is believed."""
    now = at(24 * 30).timestamp()
    part = PartitionState(0, {})
    part.apply(dossier(C, "D-1", 2, "e-2", 1), believed_until(now))
    part.apply(typo_year(dossier(C, "D-2", 2, "e-typo", 1)), believed_until(now))
    last = [line for line in render([part], now).splitlines() if line.startswith("commune_last_event_timestamp")]
    assert last == [f'commune_last_event_timestamp_seconds{{province="08",commune="{C}"}} {at(1).timestamp()}']
    soon = datetime.fromtimestamp(now, UTC) + FUTURE_MARGIN
    part.apply(dossier(C, "D-3", 2, "e-3", 1).model_copy(update={"time": soon}), believed_until(now))
    assert part.communes[C].last_event_us == int(soon.timestamp()) * 1_000_000


@pytest.mark.parametrize("kind", ["broadcast", "visit"])
def test_the_last_event_time_is_the_newest_events_in_any_order_and_after_a_restore(kind: str) -> None:
    """A start dated after the end the state keeps (a start never undoes an end) is still the commune's newest event:
    read first it moved the last-event time to 02:00, read after the end it did not, and a restore from the
    changelog gave 01:00 back (property test `test_core_properties`: broadcast completed at 01:00, started at
    02:00)."""
    if kind == "broadcast":
        end, start = broadcast(C, "A1", "C1", "completed", "b-end", 1), broadcast(C, "A1", "C1", "started", "b-st", 2)
    else:
        end, start = visit_completed(C, "V1", "v-end", 1, 3, 4, 1, 0), visit_started(C, "V1", "v-st", 2)
    newest = int(at(2).timestamp()) * 1_000_000
    for order in ((end, start), (start, end)):
        part = PartitionState(0, {})
        changelog = [c for e in order if isinstance(c := part.apply(e), tuple)]
        assert part.communes[C].last_event_us == newest, order
        again = PartitionState(0, {})
        for key, value in changelog[-1:]:  # compacted: the entity's last state
            again.restore(key, value)
        assert again.communes[C].last_event_us == newest, order
        assert again.communes[C].counts == part.communes[C].counts


def test_a_sender_whose_clock_is_hours_fast_keeps_its_events_in_order() -> None:
    """Vietnam time sent as UTC (7 h ahead): every event is disbelieved, yet they stay ordered among themselves,
    so the dossier is returned in every order; the commune's last-event time does not move."""
    # each event arrives when it happens: the worker's clock is its true time
    fast = [(e.model_copy(update={"time": e.time + timedelta(hours=7)}), e.time.timestamp()) for e in lifecycle()]
    expected = figures(fresh(*lifecycle()))
    for order in itertools.permutations(fast):
        part = PartitionState(0, {})
        for e, now in order:
            part.apply(e, believed_until(now))
        assert figures(part) == expected and part.communes[C].last_event_us == 0


def test_the_worker_believes_event_times_against_the_clock_it_is_given(tmp_path: Path) -> None:
    """A batch is applied against the worker's clock: the same future-dated event loses to the real one at a
    2025 clock, and is the newest once the clock has reached its time."""
    in_progress, done = typo_year(dossier(C, "D-1", 4, "e-typo", 2), 2026), dossier(C, "D-1", 10, "e-done", 30)
    tp = TopicPartition(CANONICAL[Family.DOSSIER].name, 0)
    opened = []
    for now in (at(48).timestamp(), in_progress.time.timestamp()):
        owner = Ownership(KafkaConnection(), Names(""), tmp_path, "test", new_writer=None)
        part = owner.partitions[0] = PartitionState(0, {})
        owner.owned = {0}  # as `assign` leaves it
        owner.apply(fetch(tp, 0, in_progress, done), now)
        opened.append(part.communes[C].get("open"))
    assert opened == [0, 1]


def test_an_event_time_is_believed_against_when_it_was_published_not_when_it_is_read(tmp_path: Path) -> None:
    """Lag must not change what a record means: a sender 2 h fast, its earlier event read an hour late (the
    worker's clock past its time) and its later one at once, keeps them in order: both are judged against their
    records' timestamps (when intake published them)."""
    received = dossier(C, "D-1", 2, "e-1", 1)
    returned = dossier(C, "D-1", 10, "e-2", 30)
    fast = [e.model_copy(update={"time": e.time + timedelta(hours=2)}) for e in (received, returned)]
    tp = TopicPartition(CANONICAL[Family.DOSSIER].name, 0)
    owner = Ownership(KafkaConnection(), Names(""), tmp_path, "test", new_writer=None)
    part = owner.partitions[0] = PartitionState(0, {})
    owner.owned = {0}  # as `assign` leaves it
    def read(offset: int, event: Event, published: datetime, clock: datetime) -> None:
        (rec,) = fetch(tp, offset, event)[tp]
        owner.apply({tp: [replace(rec, timestamp=int(published.timestamp() * 1000))]}, clock.timestamp())

    read(0, fast[1], returned.time, clock=returned.time)  # read as it is published
    read(1, fast[0], received.time, clock=returned.time + timedelta(hours=3))  # read late: published long before
    assert figures(part) == figures(fresh(received, returned))


def test_metrics_disbelieves_future_times_as_the_deadline_tracker_does() -> None:
    """One margin for the whole bus: metrics believes event times as far ahead of its clock as notify's
    deadline tracker does."""
    from services.notify import deadlines

    assert FUTURE_MARGIN == deadlines.FUTURE_MARGIN


def test_records_of_a_partition_not_owned_now_are_skipped_and_never_committed(tmp_path: Path) -> None:
    """A batch fetched before a rebalance, applied after it: the partition is another worker's now, or still being
    restored here (paused). Its records change no state and their offsets are not committed (the owner reads them
    again from the committed offset; a commit of them here would move the owner's offsets)."""
    tp = TopicPartition(CANONICAL[Family.DOSSIER].name, 0)
    owner = Ownership(KafkaConnection(), Names(""), tmp_path, "test", new_writer=None)
    part = owner.partitions[0] = PartitionState(0, {})
    changes, offsets = owner.apply(fetch(tp, 0, dossier(C, "D-1", 2, "e-1", 1)), LATER)
    assert (changes, offsets, part.communes) == ({}, {}, {})
    owner.owned = {0}
    assert owner.apply(fetch(tp, 0, dossier(C, "D-1", 2, "e-1", 1)), LATER)[1] == {tp: 1}


def test_a_due_date_with_or_without_a_time_is_overdue_only_once_its_day_is_over() -> None:
    """Due on Thursday 6 November, given as a date (local midnight, as `20251106` or `20251106000000` arrive) or at
    08:00: open and not overdue all Thursday, as a dossier finished that day counts on time; overdue from Friday
    00:00 Vietnam time (time audit: overdue from Thursday's first minute; metrics audit: from 08:00)."""
    part = fresh(dossier(C, "A", 2, "a2", 1, due_days=3 - 8 / 24), dossier(C, "B", 2, "b2", 1, due_days=3))
    t, hour = part.communes[C], 3600
    thursday = T0.timestamp() + 3 * 86400 - 8 * hour  # 00:00 Vietnam time; B is due at 08:00
    assert [t.overdue(thursday + h * hour + 1) for h in (0, 9, 23)] == [0, 0, 0]
    assert [t.overdue(thursday + 24 * hour - 1), t.overdue(thursday + 24 * hour)] == [0, 2]


def test_a_visit_state_without_a_later_event_is_written_as_workers_before_newest_at_read_it() -> None:
    """A visit's state is written in the 7 members a worker before `newest_at` reads (`VisitState(*v)` of 8 raised
    there: in a rolling upgrade or a roll-back, every visit the new worker wrote was skipped at restore). One with a
    later start than its completion keeps the 8th, which such a worker cannot read (the runbook's upgrade note); both
    load back as they were here."""
    from services.metrics.partition import dumps, loads
    from services.metrics.state import VisitState

    plain = VisitState(2, 10, "e-2", 4, 3, 2, 1)
    later = plain._replace(newest_at=20)
    assert orjson.loads(dumps(plain)) == [2, 10, "e-2", 4, 3, 2, 1]
    assert len(orjson.loads(dumps(later))) == 8
    assert [loads(b"v|02269|V1", dumps(s)) for s in (plain, later)] == [plain, later]
