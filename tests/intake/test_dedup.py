"""Unit tests of intake's de-duplication state and its changelog records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.events import Family
from services.intake.dedup import SeenByPartition, SeenIds, changelog_record, read_changelog_record

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
    """One changelog record carries a transaction's ids for one raw partition, with family and time."""
    key, value = changelog_record("dossier", 3, 120, ["e1", "e2"], 1_700_000_000_000)
    assert key == b"dossier:3:120"
    assert read_changelog_record(key, value) == ("dossier", 1_700_000_000_000, ["e1", "e2"])


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
