"""Unit tests of intake's de-duplication state and its changelog records."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Family
from services.intake.dedup import (
    SeenByPartition,
    SeenIds,
    changelog_record,
    published_key,
    read_changelog_record,
)

pytestmark = pytest.mark.unit


def test_ids_are_remembered_within_the_window_and_forgotten_after() -> None:
    """An id stays known for the window from its first publication, then is forgotten."""
    seen = SeenIds(window=timedelta(minutes=10))
    seen.add("a", at_ms=0)
    seen.add("b", at_ms=9 * 60_000)
    seen.add("a", at_ms=9 * 60_000)  # a repeat does not extend the first-seen time
    assert seen.expire(now_ms=10 * 60_000 + 1) == 1
    assert "a" not in seen and "b" in seen and len(seen) == 1


def test_changelog_record_round_trips() -> None:
    """One changelog record carries a transaction's published keys for one raw partition, with family and time."""
    keys = [published_key("/communes/02269/mc", "e1"), published_key("/communes/02269/mc", "e2")]
    key, value = changelog_record("dossier", 3, 120, keys, 1_700_000_000_000)
    assert key == b"dossier:3:120"
    assert read_changelog_record(key, value) == ("dossier", 1_700_000_000_000, keys, [])
    assert orjson.loads(value)["ids"] == ["e1", "e2"], "the previous release reads `ids` (rolling upgrade, rollback)"


def test_one_id_from_two_sources_is_two_events() -> None:
    """CloudEvents ids are unique per source: the same id from another source is another event, its own from
    the same source a repeat."""
    seen = SeenIds()
    seen.add(published_key("/communes/02269/mc", "1001"), at_ms=0)
    assert seen.published("/communes/02269/mc", "1001")
    assert not seen.published("/communes/00004/mc", "1001")
    assert not seen.published("/communes/02269/mc", "1002")


def test_ids_restored_from_records_written_before_sources_counted_stand_for_any_source() -> None:
    """A changelog record of the earlier form (bare ids) still makes its events published once: its ids match
    from any source until the window forgets them."""
    value = b'{"at": 0, "ids": ["e1"]}'
    family, at_ms, keys, legacy = read_changelog_record(b"dossier:3:120", value)
    assert (family, at_ms, keys, legacy) == ("dossier", 0, [], ["e1"])
    seen = SeenIds(window=timedelta(minutes=10))
    for event_id in legacy:
        seen.add_legacy(event_id, at_ms)
    assert seen.published("/communes/02269/mc", "e1") and seen.published("/any", "e1") and len(seen) == 1
    assert seen.expire(now_ms=10 * 60_000 + 1) == 1 and not seen.published("/any", "e1")


def test_partition_state_is_created_once_and_dropped_on_forget() -> None:
    """A raw partition's ids persist until it is forgotten; only partitions without state need a restore."""
    seen = SeenByPartition()
    seen.of(Family.DOSSIER, 1).add("e1", at_ms=0)
    seen.of(Family.DOSSIER, 1).add("e2", at_ms=0)
    assert "e1" in seen.of(Family.DOSSIER, 1) and len(seen) == 2
    assert seen.missing({(Family.DOSSIER, 1), (Family.DOSSIER, 2)}) == {(Family.DOSSIER, 2)}
    seen.forget({(Family.DOSSIER, 1)})
    assert len(seen) == 0 and seen.missing({(Family.DOSSIER, 1)}) == {(Family.DOSSIER, 1)}


def test_expiry_scans_at_most_once_per_interval() -> None:
    """Old ids are forgotten by the first expiry, and the next scan waits a full interval."""
    seen = SeenByPartition()
    window_ms = 7 * 24 * 3600 * 1000
    seen.of(Family.DOSSIER, 0).add("old", at_ms=0)
    seen.expire_due(now_ms=window_ms + 1, interval_ms=60_000)
    assert len(seen) == 0
    seen.of(Family.DOSSIER, 0).add("old-too", at_ms=0)
    seen.expire_due(now_ms=window_ms + 59_999, interval_ms=60_000)
    assert len(seen) == 1, "within the interval: no scan"
    seen.expire_due(now_ms=window_ms + 60_001, interval_ms=60_000)
    assert len(seen) == 0


def test_a_clock_stepped_back_does_not_hold_the_expiry_off() -> None:
    """The clock stepped back days after a scan: the next scan comes an interval later on the new clock, not the step
    and an interval later (ids restored from another worker's changelog meanwhile stayed as long past the window)."""
    seen = SeenByPartition()
    day_ms, window_ms = 24 * 3600 * 1000, 7 * 24 * 3600 * 1000
    seen.expire_due(now_ms=10 * day_ms, interval_ms=60_000)
    seen.of(Family.DOSSIER, 1).add("restored", at_ms=0)  # a partition moved in, its ids stamped by a right clock
    seen.expire_due(now_ms=window_ms + 60_001, interval_ms=60_000)  # put right: 3 days back
    assert len(seen) == 0


def test_the_largest_changelog_record_fits_its_topic() -> None:
    """A full transaction's ids of one raw partition (`batch_max_records` events, each id and source at its length
    limit in 4-byte characters, JSON-escaped as backslashes double) fit the topic's `max.message.bytes`: a record
    past it fails the transaction, again after every restart (the audit's 1.6-2.1 MB against a broker's default 1 MB,
    with the topic setting none)."""
    from schemas.topics import INTAKE_DEDUP
    from services.intake.settings import IntakeSettings

    n = IntakeSettings().batch_max_records
    widest = [published_key("😀" * 256, "😀" * 128) for _ in range(n)]
    escaped = [published_key("\\" * 256, "\\" * 128) for _ in range(n)]
    limit = int(INTAKE_DEDUP.config["max.message.bytes"])
    for keys in (widest, escaped):
        key, value = changelog_record("dossier", 0, 0, keys, 0)
        assert len(key) + len(value) + 1024 < limit


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(-5, 5)), max_size=200), st.integers(0, 60))
def test_expiry_forgets_no_id_early_and_every_old_one_of_an_ordered_history(steps: list[tuple[int, int]],
                                                                          now_step: int) -> None:
    """Ids added in time order (with a clock stepping back now and then): expiry, which stops at the first id within
    the window, never forgets one within it; when the times never go back, it forgets every one before it."""
    window_ms = 10 * 60_000
    seen, t, times, ordered = SeenIds(timedelta(milliseconds=window_ms)), 0, {}, True
    for i, (forward, back) in enumerate(steps):
        t += forward * 60_000
        at = t + min(back, 0) * 60_000
        ordered = ordered and (not times or at >= max(times.values()))
        times.setdefault(f"/s:{i}", at)
        seen.add(f"/s:{i}", at)
    now = now_step * 60_000 + window_ms
    seen.expire(now)
    cutoff = now - window_ms
    assert all(k in seen for k, at in times.items() if at >= cutoff), "an id within the window was forgotten"
    if ordered:
        assert not any(k in seen for k, at in times.items() if at < cutoff)


def test_an_id_stamped_ahead_of_the_clock_holds_no_other_id_past_its_window() -> None:
    """An id stamped 30 days ahead (a worker's clock ran fast, or a restore of its changelog record) first: the ids
    behind it are forgotten at their time (before: all held until its time came); it is kept a window from when
    expiry met it, never forgotten early."""
    day = 86_400_000
    seen = SeenIds()
    seen.add("/fast:1", 30 * day)
    for i in range(10_000):
        seen.add(f"/s:{i}", i * 7 * day // 10_000)
    assert seen.expire(20 * day) == 10_000
    assert len(seen) == 1 and "/fast:1" in seen
    assert seen.expire(26 * day) == 0 and "/fast:1" in seen
    assert seen.expire(27 * day + 1) == 1 and len(seen) == 0
