"""Property: the metrics core's figures depend only on the set of events seen, whatever their order, repeats and
crashes (a restore from the changelog, then a suffix of the events applied again), and they are the oracle's.

Hypothesis draws a few communes' events with the builders of `tests.metrics.events` on a coarse grid of times, so
ties are common: dossiers along arbitrary status paths (several statuses and ids at the same time, reopened after
completion, sticky facts on some events only), visits and trainings reported again with other figures, an
announcement scheduled more than once and its clusters' broadcasts started, completed or failed (same times too).
They are encoded as intake writes them and decoded as the worker does (`decoding.fast`), applied in a drawn order
with drawn repeats, each event's record timestamp its place in the topic. At drawn points the worker "crashes": each
partition's state is rebuilt from its changelog so far (every record, or only the last per key as compaction leaves
it) and the events from a drawn earlier offset on are applied again. The export must equal (a) one pass over each
event once and (b) `golden.expected` at a fixed `now`; the entity states must be equal too, and the last-received
time that of the same run without crashes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from schemas import wire
from schemas.deadletter import Rejection
from schemas.envelope import Event
from schemas.topics import PARTITIONS
from services.common.partitioner import partition_for
from services.metrics.decoding import fast
from services.metrics.exposition import render
from services.metrics.partition import PartitionState
from tests.fuzz.strategies import fuzz_settings
from tests.metrics.events import broadcast, dossier, scheduled, training, visit_completed, visit_started
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

hours = st.sampled_from(HOURS)
letters = st.sampled_from("abz")  # id prefixes: which of two same-time events sorts first is drawn too


@st.composite
def dossier_events(draw: st.DrawFn, commune: str, code: str) -> list[Event]:
    out = []
    for i in range(draw(st.integers(1, 5))):
        status = draw(st.integers(1, 10))
        fees = draw(st.booleans())
        out.append(dossier(commune, code, status, f"{code}-{draw(letters)}{i}", draw(hours),
                           channel=draw(st.sampled_from(["counter", "online", "mobile_team"])),
                           due_days=draw(st.sampled_from([1, 3, 8])), end_hours=draw(hours), fees=fees,
                           paid_online=draw(st.booleans()), digitised=draw(st.booleans())))
    return out


@st.composite
def team_events(draw: st.DrawFn, commune: str) -> list[Event]:
    out: list[Event] = []
    for i in range(draw(st.integers(0, 4))):
        visit, eid, h = draw(st.sampled_from(["V1", "V2"])), f"{commune}-{draw(letters)}v{i}", draw(hours)
        if draw(st.booleans()):
            out.append(visit_completed(commune, visit, eid, h, *draw(st.tuples(*[st.integers(0, 9)] * 4))))
        else:
            out.append(visit_started(commune, visit, eid, h))
    for i in range(draw(st.integers(0, 2))):
        out.append(training(commune, "S1", f"{commune}-{draw(letters)}t{i}", draw(hours), draw(st.integers(0, 9))))
    return out


@st.composite
def announcement_events(draw: st.DrawFn, commune: str) -> list[Event]:
    out: list[Event] = []
    for i in range(draw(st.integers(0, 2))):
        out.append(scheduled(commune, draw(st.sampled_from(["A1", "A2"])), f"{commune}-{draw(letters)}s{i}",
                             draw(hours), starts_hours=draw(hours)))
    for i in range(draw(st.integers(0, 5))):
        h = draw(hours)
        out.append(broadcast(commune, draw(st.sampled_from(["A1", "A2"])), draw(st.sampled_from(["C1", "C2"])),
                             draw(st.sampled_from(["started", "completed", "failed"])),
                             f"{commune}-{draw(letters)}b{i}", h,
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


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Event], list[int], list[tuple[int, int, bool]]]:
    """Events, the order they are read in (every one at least once, some again) and the crashes: (where, how far
    back the events are read again, whether the changelog was compacted)."""
    events = draw(event_sets())
    n = len(events)
    order = draw(st.permutations(range(n)))
    for at_, which in draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, max(n - 1, 0))), max_size=n)):
        if n:
            order.insert(at_, which)
    crashes = draw(st.lists(st.tuples(st.integers(0, len(order)), st.integers(0, len(order)), st.booleans()),
                            max_size=3))
    return events, order, sorted(crashes)


def restored(partition: int, changelog: Changelog, compacted: bool) -> PartitionState:
    """A fresh partition rebuilt from its changelog: every record, or only the last of each key (compaction)."""
    last = {key: i for i, (key, _, _) in enumerate(changelog)}
    part = PartitionState(partition, {})
    for i, (key, value, stamp) in enumerate(changelog):
        if not compacted or last[key] == i:
            part.restore(key, value, stamp)
    return part


def play(events: list[Event], order: list[int], crashes: list[tuple[int, int, bool]]) -> dict[int, PartitionState]:
    """The worker's pure core over `order` (the topic's offsets), crashing where `crashes` say."""
    decoded = [fast(rec.headers, rec.value) for rec in map(wire.encode, events)]
    parts: dict[int, PartitionState] = {}
    changelogs: dict[int, Changelog] = defaultdict(list)
    pending, offset = list(crashes), 0
    while offset < len(order):
        if pending and pending[0][0] <= offset:
            _, back, compacted = pending.pop(0)
            parts = {p: restored(p, changelogs[p], compacted) for p in parts}
            offset = max(0, offset - back)  # the committed offset: at most where the changelog is
            continue
        event, stamp = decoded[order[offset]], 1_000 * (offset + 1)
        p = partition_for(event.commune.encode(), PARTITIONS)
        out = parts.setdefault(p, PartitionState(p, {})).apply_safely(event, received_ms=stamp)
        assert not isinstance(out, Rejection), out
        if isinstance(out, tuple):
            changelogs[p].append((*out, stamp))
        offset += 1
    return parts


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
def test_figures_depend_only_on_the_set_of_events(run: tuple[list[Event], list[int], list[tuple[int, int, bool]]]
                                                  ) -> None:
    events, order, crashes = run
    note("\n".join(f"{i}: {brief(e)}" for i, e in enumerate(events)) + f"\norder {order}\ncrashes {crashes}")
    crashed, once = play(events, order, crashes), play(events, list(range(len(events))), [])
    assert states(crashed) == states(once)
    got = figures(crashed)
    assert got == figures(once)
    want = expected(events, NOW)
    assert {k: v for k, v in got.items() if k[0] in ORACLE_FAMILIES} == want
    assert last_received(crashed) == last_received(play(events, order, []))
