"""Fuzzing what the deadline tracker restores from its changelog: any bytes, and dossier states with hostile members.

Only the tracker writes `<app id>-tracked-changelog`, but a record it cannot read (a tool, an older writer, an
operator's kcat) must not end the restore: read again by every restart, it stopped the tracker, and notify with it.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.notification import TrackedDossier
from services.common.rocks import open_fresh
from services.notify.deadline_index import TrackedPartition
from tests.fuzz.strategies import EXAMPLES, dumps, fuzz_settings, mutated

pytestmark = pytest.mark.unit
NOW = datetime(2025, 11, 4, 5, 0, tzinfo=UTC)
BASES = [("open", TrackedDossier(dossier_code="TL-1", commune="02269", province="08", procedure_code="1.001234",
                                 due_at=NOW, as_of=NOW - timedelta(days=1), event_id="e-1")
          .model_dump(mode="json"))]
VALUES = st.one_of(st.binary(max_size=200), st.none(), mutated(BASES).map(lambda tagged: dumps(tagged[1])))
RECORDS = st.lists(st.tuples(st.sampled_from([b"02269:TL-1", b"02269:TL-2", b"", b"\xff"]), VALUES), max_size=6)


@fuzz_settings(200)
@given(RECORDS, st.integers(-2, 60))
def test_any_changelog_record_is_restored_or_skipped_and_the_tracker_goes_on(
        records: list[tuple[bytes, bytes | None]], days: int) -> None:
    """No record raises out of `load` and `index_all`; after them every state reads back, a tick fires without
    raising, and a new state of each dossier is taken."""
    EXAMPLES["notify: deadline changelog restore, fire"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        part = TrackedPartition(open_fresh(Path(tmp) / "p0"))
        try:
            for key, value in records:
                part.load(key, value)
            part.index_all()
            assert all(isinstance(d, TrackedDossier) for d in part.states())
            part.fire(NOW + timedelta(days=days))
            part.record_state(TrackedDossier.model_validate(BASES[0][1]), NOW)
            assert part.get(b"02269:TL-1") is not None
        finally:
            part.db.close()
