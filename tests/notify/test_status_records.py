"""Notify's status records stay small whatever a channel returns, and a refused status does not end the run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from schemas.notification import ChannelKind, NotificationKind, NotificationStatus, Outcome
from services.notify import metrics
from services.notify.channels.base import Receipt
from services.notify.statuses import MAX_BYTES, bounded
from tests.notify.fakes import Calls, FakeChannel, FakeProducer
from tests.notify.test_dispatcher import OUT, citizen_sms, running, settle

pytestmark = pytest.mark.unit
TOPIC_LIMIT = 1_048_588
"""The broker's default `max.message.bytes`, which commune.notify.status keeps."""


async def test_a_receipt_with_an_11_mb_id_gives_a_small_sent_status_and_the_lane_goes_on() -> None:
    """A channel that passes on an 11 MB provider id (as the SMS channel did): the status is written without it,
    small, `sent`, and the next request is sent. Before, the status was refused for its size, the sender task
    ended with MessageSizeTooLargeError and so did the run; the `sent` status was lost (the ledger had it done)."""
    producer = FakeProducer(max_bytes={OUT.status: TOPIC_LIMIT})
    channel = FakeChannel(Receipt("x" * (11 * 1024 * 1024), via="sms"))
    async with running(channel, producer=producer, routine=1) as s:
        done = Calls()
        huge, after = citizen_sms("huge-id-1"), citizen_sms("after-1")
        for request in (huge, after):
            await s.dispatcher.submit(request, done)
        await settle(lambda: done.count == 2, "both sent")
        records = s.producer.to(OUT.status)
        assert s.outcomes(huge.notification_id) == [("sent", 1)] and s.outcomes(after.notification_id) == [("sent", 1)]
    assert producer.refused == 0 and max(len(m.value or b"") for m in records) <= MAX_BYTES
    [status] = [m.json() for m in records if m.json()["notification_id"] == huge.notification_id]
    assert "provider_message_id" not in status


@pytest.mark.parametrize("outcome", [Receipt("sms-1", via="sms"),
                                     Receipt(None, via="sms", reply_refused="provider_id_refused")])
async def test_a_status_the_topic_refuses_for_its_size_is_counted_and_the_run_goes_on(outcome: Receipt) -> None:
    """A status topic that refuses every record for its size: each refusal is logged and counted, the notification
    is done all the same (the ledger holds it) and the next one is sent; the run does not end and loop."""
    producer = FakeProducer(max_bytes={OUT.status: 10})
    before = metrics.STATUSES_REFUSED._value.get()
    with capture_logs() as logs:
        async with running(FakeChannel(outcome, outcome), producer=producer, routine=1) as s:
            done = Calls()
            first, second = citizen_sms("refused-1"), citizen_sms("refused-2")
            for request in (first, second):
                await s.dispatcher.submit(request, done)
            await settle(lambda: done.count == 2, "both done")
            assert {first.notification_id, second.notification_id} <= set(s.ledger.done)
    assert producer.refused == 2 and metrics.STATUSES_REFUSED._value.get() == before + 2
    refused = [e for e in logs if e["event"] == "notify.status_refused"]
    assert [(e["nid"], e["outcome"]) for e in refused] == [(first.notification_id, Outcome.SENT.value),
                                                          (second.notification_id, Outcome.SENT.value)]


async def test_a_refused_provider_reply_is_a_reason_a_metric_and_a_log_line_never_its_value() -> None:
    """A receipt saying the provider's id was refused: `sent` with reason `provider_id_refused` and no id, counted
    by channel and reason, logged as `notify.provider_reply_refused` (codes only)."""
    counter = metrics.PROVIDER_REPLIES_REFUSED.labels("sms", "provider_id_refused")
    before = counter._value.get()
    with capture_logs() as logs:
        async with running(FakeChannel(Receipt(None, via="sms", reply_refused="provider_id_refused"))) as s:
            done, request = Calls(), citizen_sms("dirty-1")
            await s.dispatcher.submit(request, done)
            await settle(lambda: done.count == 1, "sent")
            [status] = [m.json() for m in s.producer.to(OUT.status)]
    assert status["outcome"] == "sent" and status["reason"] == "provider_id_refused"
    assert "provider_message_id" not in status and counter._value.get() == before + 1
    [line] = [e for e in logs if e["event"] == "notify.provider_reply_refused"]
    assert (line["nid"], line["via"], line["reason"]) == (request.notification_id, "sms", "provider_id_refused")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20_000), st.text(max_size=20_000))
def test_a_status_record_is_bounded_whatever_its_provider_id_and_reason(provider_id: str, reason: str) -> None:
    """A status given an id and a reason of any length (as a channel passing on what a provider said would give) is
    written under `statuses.MAX_BYTES`, its ids whole."""
    status = NotificationStatus(
        notification_id="5f1c2a9e0b7d4c3e5f1c2a9e0b7d4c3e", event_id="e" * 128, rule="dossier.accepted",
        kind=NotificationKind.DOSSIER_ACCEPTED, channel=ChannelKind.SMS, recipient_ref="r" * 128, commune="02269",
        outcome=Outcome.SENT, attempt=1, at=datetime(2025, 11, 3, tzinfo=UTC), provider_message_id=provider_id,
        reason=reason, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    value = bounded(status)
    assert len(value) <= MAX_BYTES
    assert json.loads(value)["notification_id"] == status.notification_id
