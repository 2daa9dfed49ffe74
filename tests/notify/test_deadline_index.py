"""The due-time index (`deadline_index`) against the full scan it replaced, for random dossier histories and clocks."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.notification import DeadlineAlert, NotificationKind, TrackedDossier
from schemas.times import overdue_from
from services.common.rocks import open_fresh
from services.notify import deadlines
from services.notify.deadline_index import INDEX, STATE, TrackedPartition, index_key, key_of

pytestmark = pytest.mark.unit
BASE = datetime(2025, 11, 3, 1, 0, tzinfo=UTC)  # Monday 08:00 Vietnam
COMMUNES = ("02269", "02270")
CODES = ("D-1", "D-2", "D-3", "D-4")


class FullScan:
    """The oracle: today's tracker in one process (a dict of states, every tick asks every dossier)."""

    def __init__(self) -> None:
        self.table: dict[str, TrackedDossier] = {}

    def record_state(self, d: TrackedDossier) -> None:
        key = f"{d.commune}:{d.dossier_code}"
        if not d.is_open:
            self.table.pop(key, None)
        else:
            self.table[key] = deadlines.merge(self.table.get(key), d)

    def tick(self, now: datetime) -> list[DeadlineAlert]:
        # an open dossier whose overdue fired at an earlier tick is dropped once long past due
        for key, d in list(self.table.items()):
            if d.alerted_overdue and now >= overdue_from(d.due_at) + deadlines.KEEP_OPEN_PAST_DUE:
                del self.table[key]
        fired = [a for d in self.table.values() for a in deadlines.alerts_due(d, now)]
        for a in fired:
            key = f"{a.commune}:{a.dossier_code}"
            self.table[key] = deadlines.mark(self.table[key], a)
        return fired


def state(commune: str, code: str, due_h: int, is_open: bool) -> TrackedDossier:
    return TrackedDossier(dossier_code=code, commune=commune, province="08", procedure_code="1.001234",
                          due_at=BASE + timedelta(hours=due_h), is_open=is_open)


updates = st.builds(lambda c, k, h, o: ("state", state(c, k, h, o)), st.sampled_from(COMMUNES),
                    st.sampled_from(CODES), st.integers(-60, 24 * 12), st.booleans())
ticks = st.builds(lambda m: ("tick", m), st.one_of(st.integers(0, 36 * 60), st.just(31 * 24 * 60)))
"""A tick `m` minutes after the previous one (0: the same instant again)."""
edges = st.builds(lambda i, e: ("edge", (i, e)), st.integers(0, 7), st.integers(-1, 1))
"""A tick exactly at (or 1 µs around) the next alert time of the i-th tracked dossier, if not in the past."""
histories = st.lists(st.one_of(updates, ticks, edges), min_size=1, max_size=40)


@contextmanager
def partition() -> Iterator[TrackedPartition]:
    with tempfile.TemporaryDirectory() as tmp:
        part = TrackedPartition(open_fresh(Path(tmp) / "p0"))
        try:
            yield part
        finally:
            part.db.close()


def raw(part: TrackedPartition) -> dict[bytes, bytes]:
    """Every key and value of the partition's store (raw mode: bytes, which rocksdict's stubs cannot say)."""
    return {cast(bytes, k): cast(bytes, v) for k, v in part.db.items()}


def index_entries(part: TrackedPartition) -> set[bytes]:
    return {k for k in raw(part) if k[:1] == INDEX}


def expected_entries(oracle: FullScan) -> set[bytes]:
    """One index entry per open dossier: at its `next_alert_at`, or when it is dropped once every alert fired."""
    out = set()
    for d in oracle.table.values():
        at = deadlines.next_alert_at(d) or overdue_from(d.due_at) + deadlines.KEEP_OPEN_PAST_DUE
        out.add(index_key(at, key_of(d.commune, d.dossier_code)))
    return out


def edge_time(oracle: FullScan, i: int, delta_us: int, now: datetime) -> datetime:
    times = sorted(t for d in oracle.table.values() if (t := deadlines.next_alert_at(d)) is not None)
    if not times:
        return now
    return max(now, times[i % len(times)] + timedelta(microseconds=delta_us))


def ids(alerts: list[DeadlineAlert]) -> list[str]:
    return sorted(a.model_dump_json() for a in alerts)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_index_fires_exactly_the_alerts_of_the_full_scan(history: list[tuple[str, object]]) -> None:
    """For any history of states and forward-moving ticks, the index fires the full scan's alerts, tick by tick."""
    oracle, now = FullScan(), BASE - timedelta(days=3)
    with partition() as part:
        for op, arg in history:
            if op == "state":
                assert isinstance(arg, TrackedDossier)
                oracle.record_state(arg)
                part.record_state(arg)
            else:
                if op == "tick":
                    assert isinstance(arg, int)
                    now += timedelta(minutes=arg)
                else:
                    assert isinstance(arg, tuple)
                    now = edge_time(oracle, arg[0], arg[1], now)
                expected = oracle.tick(now)
                assert ids([a for a, _ in part.fire(now) if a is not None]) == ids(expected)
            assert index_entries(part) == expected_entries(oracle)
            assert {s.model_dump_json() for s in part.states()} == {s.model_dump_json() for s in oracle.table.values()}


def test_a_tick_touches_only_due_dossiers_and_a_moved_or_closed_dossier_leaves_its_old_entry() -> None:
    """Only due entries are read; closing removes the entry, moving the due date re-keys it and re-arms alerts."""
    with partition() as part:
        for i in range(50):
            part.record_state(state("02269", f"F-{i}", 24 * 30 + i, True))  # far in the future
        part.record_state(state("02269", "SOON", 20, True))
        now = BASE + timedelta(hours=1)
        assert list(part.due(now)) == [b"02269:SOON"]
        [(alert, (key, value))] = part.fire(now)
        assert alert.kind is NotificationKind.DUE_SOON and key == b"02269:SOON" and value is not None
        assert part.fire(now) == [] and list(part.due(now)) == []
        part.record_state(state("02269", "SOON", 10, True))  # moved: a new due date earns new alerts
        assert [a.kind for a, _ in part.fire(now)] == [NotificationKind.DUE_SOON]
        part.record_state(state("02269", "SOON", 10, False))  # closed
        assert part.get(b"02269:SOON") is None and part.fire(BASE + timedelta(days=5)) == []
        assert len(index_entries(part)) == 50 and not [k for k in raw(part) if b"SOON" in k]


def test_restore_from_changelog_records_rebuilds_the_same_store_and_index() -> None:
    """Replaying the changelog records a partition wrote gives the same states and index, tombstones included."""
    with partition() as part, partition() as copy:
        log = [part.record_state(state("02269", c, h, True)) for c, h in (("A", 5), ("B", 30), ("C", 80))]
        log += [change for _, change in part.fire(BASE + timedelta(hours=6))]
        log.append(part.record_state(state("02269", "B", 30, False)))
        for key, value in log:
            copy.load(key, value)
        copy.index_all()
        assert raw(copy) == raw(part) and {k[:1] for k in raw(copy)} == {STATE, INDEX}


def test_a_restore_indexes_while_the_event_loop_goes_on_and_builds_the_same_index() -> None:
    """The restore's index (`index_all_yielding`) gives the loop back as it goes (a national tracker's partitions
    held it for seconds: no heartbeat, evicted at every restore) and ends as `index_all` does, a bad state dropped."""
    with partition() as part, partition() as copy, partition() as reference:
        log = [part.record_state(state("02269", f"D-{i}", i % 300, True)) for i in range(2_000)]
        for key, value in [*log, (key_of("02269", "BAD"), b"not json")]:
            copy.load(key, value)
            reference.load(key, value)

        async def restore() -> tuple[Counter[str], int]:
            turns = 0

            async def other_work() -> None:  # a heartbeat, a fetch: anything else the loop runs
                nonlocal turns
                while True:
                    turns += 1
                    await asyncio.sleep(0)

            beside = asyncio.create_task(other_work())
            await asyncio.sleep(0)
            started = turns
            try:
                return await copy.index_all_yielding(every_s=0.0), turns - started
            finally:
                beside.cancel()

        unreadable, turns = asyncio.run(restore())
        assert turns >= 1_000, turns  # the loop ran other work between the states
        assert unreadable == reference.index_all() == Counter({"not_json": 1})
        assert raw(copy) == raw(reference) == raw(part)
