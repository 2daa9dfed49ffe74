"""What travels to and from the deadline tracker is bounded as the dossier events it comes from: never a changelog
record or alert the broker refuses for its size."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from schemas.notification import DeadlineAlert, NotificationKind, TrackedDossier
from services.notify.deadline_index import key_of
from services.notify.deadline_worker import _decode

pytestmark = pytest.mark.unit
DUE = datetime(2026, 12, 10, 10, 0, tzinfo=UTC)
STATE = {"dossier_code": "TL-251101-0002", "commune": "02269", "province": "08", "procedure_code": "1.001234",
         "due_at": DUE.isoformat()}
TOO_LARGE = {
    "a 600 kB dossier code": {"dossier_code": "x" * 600_000}, "a long procedure code": {"procedure_code": "1" * 33},
    "a long officer id": {"officer_id": "o" * 65}, "a commune that is no code": {"commune": "0" * 1000},
    "a province that is no code": {"province": "p" * 1000},
}


def record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t.deadlines", 3, 42, 0, 0, b"02269", value, None, 0, len(value), [])


@pytest.mark.parametrize("change", TOO_LARGE.values(), ids=TOO_LARGE.keys())
def test_a_deadline_message_with_an_oversized_field_is_skipped_as_unreadable(change: dict[str, str]) -> None:
    """Taken, a 600 kB dossier code became a 1.2 MB changelog record (the key and the value hold it) the broker refused:
    a Kafka error, a restart, the same batch again, for ever. Now such a state (or alert) is no `DeadlineMessage`:
    the worker's `_decode` skips it before anything is written."""
    alert = {**STATE, "id": "a-1", "kind": "overdue", "at": DUE.isoformat()}
    skipped = REGISTRY.get_sample_value("notify_records_skipped_total", {"reason": "deadline_message_invalid"}) or 0
    assert _decode(record(orjson.dumps({"dossier": STATE}))) is not None
    assert _decode(record(orjson.dumps({"alert": alert}))) is not None
    assert _decode(record(orjson.dumps({"dossier": {**STATE, **change}}))) is None
    assert _decode(record(orjson.dumps({"alert": {**alert, **change}}))) is None
    assert REGISTRY.get_sample_value("notify_records_skipped_total",
                                     {"reason": "deadline_message_invalid"}) == skipped + 2  # counted, not only logged


def test_the_largest_state_and_alert_fit_far_within_the_topics_limit() -> None:
    """Every field at its bound, in four-byte characters: the changelog record (key and value) and the alert stay
    under 4 kB, against the broker's 1 MB default `max.message.bytes`."""
    wide = "\U0001f600"
    state = TrackedDossier(dossier_code=wide * 64, commune="02269", province="08", procedure_code="1" * 32,
                           officer_id=wide * 64, due_at=DUE, as_of=DUE, event_id=wide * 128)
    key = key_of(state.commune, state.dossier_code)
    assert len(key) + len(state.model_dump_json().encode()) < 4096
    alert = DeadlineAlert(id=wide * 200, kind=NotificationKind.OVERDUE, dossier_code=state.dossier_code,
                          commune=state.commune, province=state.province, procedure_code=state.procedure_code,
                          officer_id=state.officer_id, due_at=DUE, at=DUE)
    assert len(alert.model_dump_json().encode()) < 4096
