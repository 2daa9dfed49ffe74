"""Unit tests of intake's de-duplication state and its changelog records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.intake.dedup import SeenIds, changelog_record, read_changelog_record

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
