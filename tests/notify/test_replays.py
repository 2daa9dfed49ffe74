"""What notify makes of a record on commune.notify.replays (ADR 0033): the request, due now and without clear
contacts, or a skip with its reason; never an exception out of the routine consumer."""

from __future__ import annotations

import json
import zlib

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from schemas.notification import ChannelKind
from services.common.partitioner import partition_for
from services.notify import metrics, rules
from services.notify.directory import Directory
from services.notify.records import Records
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit
NAMES = Names("t")
RECORDS = Records(NotifySettings(deadlines=False), NAMES, Directory(), Registry(), None, None, None,  # type: ignore[arg-type]
                  None)  # type: ignore[arg-type]
TP = TopicPartition(NAMES.replays, 3)


def consumed(value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(NAMES.replays, 3, 9, 0, 0, b"02269", value, None, 5, len(value or b""), [])


def sms_request() -> dict[str, object]:
    [request] = [r for r in rules.for_event(dossier("rp-u"), directory(), Registry()) if r.channel is ChannelKind.SMS]
    return json.loads(request.model_dump_json())


def test_a_replayed_request_is_handed_over_due_now_and_without_clear_contacts() -> None:
    body = sms_request()
    body["not_before"] = "2030-01-01T00:00:00+07:00"
    assert body["recipient"]["phone"]  # type: ignore[index]
    [request], tracked = RECORDS.derive(TP, consumed(json.dumps(body).encode()))
    assert tracked is None and request.notification_id == body["notification_id"]
    assert request.not_before is None and request.recipient.phone is None  # the opener fills it at delivery


@pytest.mark.parametrize("value", [None, b"", b"not json", b'{"notification_id": "x"}',
                                   json.dumps({**sms_request(), "expires_at": "2030-01-01T00:00:00"}).encode(),
                                   *(json.dumps({**sms_request(), field: "x" * 100_000}).encode()
                                     for field in ("event_id", "event_source", "event_type", "rule", "commune"))],
                         ids=["null", "empty", "junk", "partial", "naive-time", "long-event-id", "long-source",
                              "long-type", "long-rule", "long-commune"])
def test_a_replay_record_that_is_no_request_is_skipped_with_its_reason(value: bytes | None) -> None:
    """Ids and codes past what notify writes (a replay written by hand: the request's schema bounded none) made
    status records and dead letters as large, which `statuses` and `deadletters` size as ids of notify's own: past
    a topic's limit, a refused write ends the run (audit)."""
    before = metrics.SKIPPED.labels("invalid_field")._value.get()
    with capture_logs() as logs:
        assert RECORDS.derive(TP, consumed(value)) == ([], None)
    assert metrics.SKIPPED.labels("invalid_field")._value.get() == before + 1
    [skipped] = [e for e in logs if e["event"] == "notify.record_skipped"]
    assert (skipped["topic"], skipped["detail"]) == (NAMES.replays, "replay")


@given(st.binary(max_size=400))
def test_any_bytes_on_the_replay_topic_give_a_request_or_a_skip(value: bytes) -> None:
    requests, tracked = RECORDS.derive(TP, consumed(value))
    assert tracked is None and len(requests) <= 1


def test_a_replay_on_another_partition_than_its_communes_is_skipped() -> None:
    """Written by hand with another partitioner (kcat's default, CRC32), a replayed request is not on its commune's
    partition: its done entry would go to a ledger partition another worker may hold, and a copy could be sent twice
    (review). Skipped, logged and counted; on its commune's partition it is handed over."""
    records = Records(NotifySettings(deadlines=False), NAMES, Directory(), Registry(), None, None, None,  # type: ignore[arg-type]
                      None)  # type: ignore[arg-type]
    records.partitions = 6
    body = sms_request()
    home = partition_for(str(body["commune"]).encode(), 6)
    other = zlib.crc32(str(body["commune"]).encode()) % 6
    assert other != home  # "02269": 4 against 1
    value = json.dumps(body).encode()
    placed = ConsumerRecord(NAMES.replays, home, 9, 0, 0, b"02269", value, None, 5, len(value), [])
    [request], _ = records.derive(TopicPartition(NAMES.replays, home), placed)
    assert request.notification_id == body["notification_id"]
    misplaced = ConsumerRecord(NAMES.replays, other, 9, 0, 0, b"02269", value, None, 5, len(value), [])
    with capture_logs() as logs:
        assert records.derive(TopicPartition(NAMES.replays, other), misplaced) == ([], None)
    assert [e["detail"] for e in logs if e["event"] == "notify.record_skipped"] == ["replay_misplaced"]
