"""Property: the metrics core's figures depend only on the set of events seen, whatever their order, repeats and
crashes (a restore from the changelog, then a suffix of the events applied again), and they are the oracle's.

Hypothesis draws a few communes' events with the builders of `tests.metrics.events` on a coarse grid of times, so
ties are common: dossiers along arbitrary status paths (several statuses and ids at the same time, reopened after
completion, sticky facts on some events only), visits and trainings reported again with other figures, an
announcement scheduled more than once and its clusters' broadcasts started, completed or failed (same times too);
some events are dated 2052 (a mistyped year). They are encoded as intake writes them and decoded as the worker does
(`decoding.fast`), applied in a drawn order with drawn repeats. Each record has a drawn timestamp (when intake
published it): on the events' grid whatever its event says, so timestamps go back from one record to the next (an
intake clock set back), or a drawn distance before or after its event's time, up to and just past
`FUTURE_MARGIN`. At drawn points the worker "crashes": each partition's state is rebuilt from its changelog so far
(every record, or only the last per key as compaction leaves it) and the records from a drawn earlier offset on are
applied again. An announcement holds at most `state.MAX_CLUSTERS` clusters, drawn down to 1 or 2 so that the
drawn clusters pass it (the real bound, 1,000, is `test_announcements`').

What the service promises (ADR 0006, ADR 0036), checked: the export and the entity states equal those of one pass
over each record once, and of the same records without crashes; the figures are `golden.expected` at a fixed `now`,
where an event more than `FUTURE_MARGIN` ahead of every record of it is ordered before every believed event of its
entity (in the order of its time among such events) and never moves the commune's last-event time; a broadcast of
an announcement's cluster past its bound, counted in the order the clusters were first read, is refused
(`TOO_MANY_CLUSTERS`, the state unchanged) and counts nowhere, in every run; the last-received time is that of the
same records without crashes, however the changelog was compacted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from schemas import wire
from schemas.deadletter import Rejection
from schemas.envelope import Event
from schemas.times import FUTURE_MARGIN
from schemas.topics import PARTITIONS
from services.common.partitioner import partition_for
from services.metrics import state
from services.metrics.decoding import fast
from services.metrics.exposition import render
from services.metrics.partition import TOO_MANY_CLUSTERS, PartitionState
from services.metrics.state import MAX_CLUSTERS, believed_until
from tests.fuzz.strategies import fuzz_settings
from tests.metrics.events import T0, at, broadcast, dossier, scheduled, training, visit_completed, visit_started
from tests.metrics.golden import NOW, Sample, expected, parse

pytestmark = pytest.mark.unit
COMMUNES = ("02269", "00691", "05977")
HOURS = (0, 1, 2, 30, 50, 74, 102, 150)  # ties; due days 1, 3, 8 against these end on either side of them
Changelog = list[tuple[bytes, bytes, int]]  # key, state, record timestamp (ms)
ORACLE_FAMILIES = frozenset({
    "commune_dossiers_received", "commune_dossiers_paid_online", "commune_dossiers_with_fees",
    "commune_dossiers_digitised", "commune_dossiers_completed", "commune_dossiers_open", "commune_dossiers_overdue",
    "commune_dossier_processing_duration_seconds_count", "commune_dossier_processing_duration_seconds_sum",
    "commune_mobile_team_visits", "commune_mobile_team_households_reached", "commune_mobile_team_accounts_activated",
    "commune_mobile_team_trainings", "commune_mobile_team_training_attendees", "commune_announcements_scheduled",
    "commune_broadcasts"})
"""Every family `golden.expected` computes (compared whole, zeros dropped: a family it finds empty is checked too)."""
NOT_SET_BASED = "commune_last_received_timestamp_seconds"  # when records arrived, not what they say: checked apart
LAST_EVENT = "commune_last_event_timestamp_seconds"
FAR = (datetime(2052, 11, 3, tzinfo=UTC) - T0).total_seconds() / 3600  # 2025 typed 2052: an event time, never believed

hours = st.sampled_from(HOURS)
times = st.sampled_from((*HOURS, FAR))  # event times: the grid, or a mistyped year
categories = st.sampled_from(["crop_disease", "storm"])  # an announcement's broadcasts may disagree with it
letters = st.sampled_from("abz")  # id prefixes: which of two same-time events sorts first is drawn too


@st.composite
def dossier_events(draw: st.DrawFn, commune: str, code: str) -> list[Event]:
    out = []
    for i in range(draw(st.integers(1, 5))):
        status = draw(st.integers(1, 10))
        fees = draw(st.booleans())
        out.append(dossier(commune, code, status, f"{code}-{draw(letters)}{i}", draw(times),
                           channel=draw(st.sampled_from(["counter", "online", "mobile_team"])),
                           due_days=draw(st.sampled_from([1, 3, 8])), end_hours=draw(hours), fees=fees,
                           paid_online=draw(st.booleans()), digitised=draw(st.booleans())))
    return out


@st.composite
def team_events(draw: st.DrawFn, commune: str) -> list[Event]:
    out: list[Event] = []
    for i in range(draw(st.integers(0, 4))):
        visit, eid, h = draw(st.sampled_from(["V1", "V2"])), f"{commune}-{draw(letters)}v{i}", draw(times)
        if draw(st.booleans()):
            out.append(visit_completed(commune, visit, eid, h, *draw(st.tuples(*[st.integers(0, 9)] * 4))))
        else:
            out.append(visit_started(commune, visit, eid, h))
    for i in range(draw(st.integers(0, 2))):
        out.append(training(commune, "S1", f"{commune}-{draw(letters)}t{i}", draw(times), draw(st.integers(0, 9))))
    return out


@st.composite
def announcement_events(draw: st.DrawFn, commune: str) -> list[Event]:
    out: list[Event] = []
    for i in range(draw(st.integers(0, 2))):
        out.append(scheduled(commune, draw(st.sampled_from(["A1", "A2"])), f"{commune}-{draw(letters)}s{i}",
                             draw(times), category=draw(categories), starts_hours=draw(hours)))
    for i in range(draw(st.integers(0, 5))):
        h = draw(times)
        out.append(broadcast(commune, draw(st.sampled_from(["A1", "A2"])), draw(st.sampled_from(["C1", "C2", "C3"])),
                             draw(st.sampled_from(["started", "completed", "failed"])),
                             f"{commune}-{draw(letters)}b{i}", h, category=draw(categories),
                             started_hours=draw(st.sampled_from([x for x in HOURS if x <= h]))))
    return out


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    for commune in draw(st.lists(st.sampled_from(COMMUNES), min_size=1, max_size=2, unique=True)):
        for n in range(draw(st.integers(0, 3))):
            events += draw(dossier_events(commune, f"{commune}-HS-{n}"))
        events += draw(team_events(commune))
        events += draw(announcement_events(commune))
    return events


Record = tuple[int, int]
"""A canonical record of the topic: the index of its event and its timestamp (epoch ms), when intake published it."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AHEAD = (-30 * 3600_000, 0, 1800_000, 3600_000, 3600_001, 2 * 3600_000)
"""How far (ms) an event time is ahead of its record's timestamp: published 30 h after it, at once, within the
margin, exactly at it (believed), 1 ms past it and 2 h past it (not believed)."""


@st.composite
def stamps(draw: st.DrawFn, of: Event) -> int:
    """A record timestamp for event `of`: an intake clock on the events' grid, whatever the event says (backwards
    from one record to the next, far behind a mistyped year), or a drawn distance from the event's own time."""
    if draw(st.booleans()):
        return int(at(draw(hours)).timestamp() * 1000)
    return int(of.time.timestamp() * 1000) - draw(st.sampled_from(AHEAD))


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Event], list[Record], list[tuple[int, int, bool]], int]:
    """Events, the topic's records in offset order (every event at least once, some again, each record with a
    timestamp of its own), the crashes: (where, how far back the records are read again, whether the changelog
    was compacted), and the clusters an announcement holds at most (`state.MAX_CLUSTERS`, or 1 or 2 so that three
    drawn clusters pass it)."""
    events = draw(event_sets())
    n = len(events)
    order = draw(st.permutations(range(n)))
    for at_, which in draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, max(n - 1, 0))), max_size=n)):
        if n:
            order.insert(at_, which)
    topic = [(i, draw(stamps(events[i]))) for i in order]
    crashes = draw(st.lists(st.tuples(st.integers(0, len(topic)), st.integers(0, len(topic)), st.booleans()),
                            max_size=3))
    return events, topic, sorted(crashes), draw(st.sampled_from([MAX_CLUSTERS, 1, 2]))


def restored(partition: int, changelog: Changelog, compacted: bool) -> PartitionState:
    """A fresh partition rebuilt from its changelog: every record, or only the last of each key (compaction)."""
    last = {key: i for i, (key, _, _) in enumerate(changelog)}
    part = PartitionState(partition, {})
    for i, (key, value, stamp) in enumerate(changelog):
        if not compacted or last[key] == i:
            part.restore(key, value, stamp)
    return part


def play(events: list[Event], topic: list[Record], crashes: list[tuple[int, int, bool]]
         ) -> tuple[dict[int, PartitionState], set[int]]:
    """The worker's pure core over `topic`, crashing where `crashes` say; the partitions and the events refused
    (`TOO_MANY_CLUSTERS`). Each event's time is believed against its record's timestamp, and the changelog record is
    stamped with `PartitionState.received_ms`, as `Ownership.apply` does."""
    decoded = [fast(rec.headers, rec.value) for rec in map(wire.encode, events)]
    parts: dict[int, PartitionState] = {}
    changelogs: dict[int, Changelog] = defaultdict(list)
    refused: set[int] = set()
    pending, offset = list(crashes), 0
    while offset < len(topic):
        if pending and pending[0][0] <= offset:
            _, back, compacted = pending.pop(0)
            parts = {p: restored(p, changelogs[p], compacted) for p in parts}
            offset = max(0, offset - back)  # the committed offset: at most where the changelog is
            continue
        i, stamp = topic[offset]
        event = decoded[i]
        p = partition_for(event.commune.encode(), PARTITIONS)
        part = parts.setdefault(p, PartitionState(p, {}))
        out = part.apply_safely(event, believed_until(stamp / 1000), stamp)
        if out is TOO_MANY_CLUSTERS:
            refused.add(i)
        else:
            assert not isinstance(out, Rejection), out
            if isinstance(out, tuple):
                changelogs[p].append((*out, part.received_ms(event.commune)))
        offset += 1
    return parts, refused


def believed(events: list[Event], topic: list[Record]) -> set[int]:
    """The events whose time is believed (ADR 0006): at most `FUTURE_MARGIN` ahead of a record's timestamp."""
    return {i for i, stamp in topic if events[i].time <= EPOCH + timedelta(milliseconds=stamp) + FUTURE_MARGIN}


def admitted(events: list[Event], topic: list[Record], cap: int) -> set[int]:
    """The events counted: all but the broadcasts of an announcement's clusters past its first `cap`, in the
    order their broadcasts were first read (ADR 0006: refused, the state unchanged)."""
    held: dict[tuple[str, str], list[str]] = defaultdict(list)
    out = set()
    for i, _ in topic:
        e = events[i]
        if "broadcast-" in e.type:
            clusters = held[(e.commune, e.data.announcement_id)]
            if e.data.cluster_id not in clusters and len(clusters) < cap:
                clusters.append(e.data.cluster_id)
            if e.data.cluster_id not in clusters:
                continue
        out.add(i)
    return out


def brief(e: Event) -> str:
    """An event in one line, for hypothesis' report of a counterexample."""
    data = e.data.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return f"{e.type.split('.')[-2]} {e.commune} {e.id} {e.time:%d %H:%M} {data}"


def figures(parts: dict[int, PartitionState]) -> dict[Sample, float]:
    out: Counter[Sample] = Counter()
    for k, v in parse(render(parts.values(), NOW)).items():
        if k[0] != NOT_SET_BASED and not k[0].startswith("commune_heard"):
            out[k] += v
    return {k: v for k, v in out.items() if v}


def states(parts: dict[int, PartitionState]) -> dict[bytes, Any]:
    return {key: state for part in parts.values() for key, state in part.states()}


def last_received(parts: dict[int, PartitionState]) -> dict[str, int]:
    return {c: t.last_received_ms for part in parts.values() for c, t in part.communes.items()}


@fuzz_settings(300)
@given(runs())
def test_figures_depend_only_on_the_set_of_events(run: tuple[list[Event], list[Record], list[tuple[int, int, bool]],
                                                             int]) -> None:
    """Whatever the order, repeats, crashes, record timestamps and cluster bound: the promises of the module's
    docstring."""
    events, topic, crashes, cap = run
    note("\n".join(f"{i}: {brief(e)}" for i, e in enumerate(events)) + f"\ntopic {topic}\ncrashes {crashes}"
         f"\ncap {cap}")
    with mock.patch.object(state, "MAX_CLUSTERS", cap):
        (crashed, refused), (plain, _) = play(events, topic, crashes), play(events, topic, [])
        counted = admitted(events, topic, cap)
        # each record once, in another order: in the events' order unless a cap decided by the order was met
        once, _ = play(events, sorted(set(topic)) if len(counted) == len(events) else list(dict.fromkeys(topic)), [])
    assert refused == set(range(len(events))) - counted
    trusted = believed(events, topic)
    event(f"cap met: {bool(refused)}; a time not believed: {len(trusted) < len(events)}")
    event(f"timestamps go back: {any(b[1] < a[1] for a, b in pairwise(topic))}")
    assert states(crashed) == states(plain) == states(once)
    got = figures(crashed)
    assert got == figures(once)
    trusted_ids = {events[i].id for i in trusted}
    want = expected([events[i] for i in sorted(counted)], NOW, lambda e: e.id in trusted_ids)
    assert {k: v for k, v in got.items() if k[0] in ORACLE_FAMILIES} == want
    newest: dict[str, float] = {}
    for i in counted & trusted:  # ADR 0006: a time not believed never moves the commune's last-event time
        newest[events[i].commune] = max(newest.get(events[i].commune, 0), events[i].time.timestamp())
    assert {k[1][1][1]: v for k, v in got.items() if k[0] == LAST_EVENT} == newest
    assert last_received(crashed) == last_received(plain)
