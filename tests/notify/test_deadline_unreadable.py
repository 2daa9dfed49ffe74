"""A deadline tracker's changelog state that is no dossier's: skipped at the restore, the good states around it kept."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from schemas.notification import NotificationKind
from services.notify import deadline_store, metrics
from services.notify.deadline_index import key_of
from tests.notify.test_deadline_index import BASE, partition, state

pytestmark = pytest.mark.unit
UNREADABLE = {"empty": b"", "not_a_state": b"{}", "not_json": b"\xff0912345678", "a list": b"[1]",
              "a field of the wrong type": b'{"dossier_code": 7, "commune": "02269"}'}


@pytest.mark.parametrize("value", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_state_that_is_no_dossier_is_deleted_and_the_others_are_indexed_and_alert(value: bytes) -> None:
    """`index_all` raised pydantic's ValidationError on it: the tracker ended, notify with it (`tracker.py`), and
    every restart restored the same record. Now it is deleted from the store and its kind returned; the states
    loaded before and after it are indexed and fire their alerts."""
    with partition() as part:
        part.load(b"02269:BEFORE", state("02269", "BEFORE", 2, True).model_dump_json().encode())
        part.load(b"02269:BAD", value)
        part.load(b"02269:AFTER", state("02269", "AFTER", 3, True).model_dump_json().encode())
        skipped = part.index_all()
        assert sum(skipped.values()) == 1 and part.get(key_of("02269", "BAD")) is None
        fired = part.fire(BASE + timedelta(hours=1))
        assert sorted((a.dossier_code, a.kind) for a, _ in fired if a) == [
            ("AFTER", NotificationKind.DUE_SOON), ("BEFORE", NotificationKind.DUE_SOON)]
        part.record_state(state("02269", "BAD", 2, True))  # its next state tracks it again
        assert part.get(key_of("02269", "BAD")) is not None


def test_the_kind_of_an_unreadable_state_is_a_code() -> None:
    """Empty, not JSON, or JSON of another shape: what the log line and the count say, never the record."""
    with partition() as part:
        for i, value in enumerate(UNREADABLE.values()):
            part.load(f"02269:D-{i}".encode(), value)
        assert part.index_all() == Counter({"not_a_state": 3, "empty": 1, "not_json": 1})


def test_skipped_states_are_counted_and_logged_once_per_partition_and_kind_without_content() -> None:
    """`notify_records_skipped_total{reason="deadline_state_invalid"}` grows by each state skipped; one log line per
    partition and kind names the partition, the kind and how many, and no key or value."""
    before = metrics.SKIPPED.labels("deadline_state_invalid")._value.get()
    with capture_logs() as logs:
        deadline_store._skipped(4, Counter({"not_json": 2, "empty": 1}))
    assert metrics.SKIPPED.labels("deadline_state_invalid")._value.get() == before + 3
    assert [(e["event"], e["partition"], e["why"], e["states"]) for e in logs] == [
        ("deadline.state_skipped", 4, "empty", 1), ("deadline.state_skipped", 4, "not_json", 2)]
