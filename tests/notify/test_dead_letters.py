"""Notify's dead letters stay within the DLQ topic's limit, and a refused dead letter does not end the run."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from schemas.notification import ChannelKind, NotificationRequest
from services.notify import deadletters, rules
from services.notify.channels.base import DeliveryError
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier
from tests.notify.fakes import Calls, FakeChannel, FakeProducer
from tests.notify.test_dispatcher import LEDGER, OUT, running, settle

pytestmark = pytest.mark.unit
TOPIC_LIMIT = 1_048_588
"""The broker's default `max.message.bytes`, which commune.dlq.notify keeps."""
HOOKS = Registry.model_validate(
    {"subscribers": [{"name": "prov-08", "url": "https://example.gov.vn/h", "secret": "s"}]})


def huge_dossier_requests() -> list[NotificationRequest]:
    """A dossier intake accepts (1,000 requested documents of 240 backslash-quote pairs, ~960 kB): its SMS and its
    webhook (the whole event in its body: ~1.9 MB once escaped again in a dead letter)."""
    event = dossier("huge-1", status=5, requested_documents=['\\"' * 240] * 1000)
    requests = rules.for_event(event, directory(), HOOKS)
    assert {r.channel for r in requests} == {ChannelKind.SMS, ChannelKind.WEBHOOK}
    return requests


async def test_a_dead_letter_of_a_huge_request_is_bounded_and_references_its_event() -> None:
    """Dead-lettered, the huge SMS and webhook requests each give a dead letter far under the topic limit (the
    webhook's was ~1.9 MB, its body escaped twice: refused by the broker, the run ended and looped). The webhook body
    is left out (the event is referenced by id and type), a header says so."""
    channel = FakeChannel(DeliveryError("http_400", retryable=False))
    async with running(channel) as s:
        done = Calls()
        requests = huge_dossier_requests()
        for request in requests:
            await s.dispatcher.submit(request, done)
        await settle(lambda: done.count == 2, "both dead-lettered")
        letters = {json.loads(d.value or b"")["channel"]: d for d in s.producer.to(OUT.dlq)}
    assert set(letters) == {"sms", "webhook"}
    for request in requests:
        letter = letters[request.channel.value]
        assert len(letter.value or b"") < 64 * 1024 < TOPIC_LIMIT
        body = json.loads(letter.value or b"")
        assert (body["notification_id"], body["event_id"], body["event_type"], body["traceparent"]) == (
            request.notification_id, request.event_id, request.event_type, request.traceparent)
        assert body.get("payload") is None and body.get("params", {}) == request.params
    assert letters["webhook"].headers["dlq.omitted"] == b"payload"
    assert "dlq.omitted" not in letters["sms"].headers  # its list parameter is cut by the rules (first items, +k)


def test_parameters_that_make_a_dead_letter_too_large_are_left_out() -> None:
    """Beyond 64 kB (parameters no rule makes today: a list is cut to its first items), the parameters go and a
    header says so; the ids stay."""
    [request] = rules.for_event(dossier("params-1"), directory(), Registry())
    value, headers = deadletters.bounded(request.model_copy(update={"params": {"documents": '\\"' * 40_000}}))
    assert len(value) < deadletters.MAX_BYTES and headers == [("dlq.omitted", b"params")]
    assert json.loads(value)["notification_id"] == request.notification_id


async def test_a_small_dead_letter_keeps_its_parameters_and_the_webhook_body() -> None:
    """A usual request's dead letter keeps its template parameters, and a webhook's its body (the event, under
    64 kB even escaped again): both can be replayed (ADR 0033). Only a large body is left out (the test above)."""
    channel = FakeChannel(DeliveryError("http_400", retryable=False))
    async with running(channel) as s:
        done = Calls()
        requests = rules.for_event(dossier("small-1"), directory(), HOOKS)
        for request in requests:
            await s.dispatcher.submit(request, done)
        await settle(lambda: done.count == 2, "both dead-lettered")
        letters = {(d.json()["channel"]): d for d in s.producer.to(OUT.dlq)}
    assert letters["sms"].json()["params"]["dossier_code"] == "TL-251101-0002" and "dlq.omitted" not in (
        letters["sms"].headers)
    webhook = next(r for r in requests if r.channel is ChannelKind.WEBHOOK)
    assert letters["webhook"].json()["payload"] == webhook.payload and "dlq.omitted" not in letters["webhook"].headers


@pytest.mark.parametrize("least_fits", [True, False])
async def test_a_dead_letter_the_broker_refuses_for_its_size_does_not_end_the_run(least_fits: bool) -> None:
    """A DLQ topic with a smaller limit than the dead letter: the dead letter is written in its least form (ids and
    reason); if even that is refused, the refusal is logged and counted and the notification is done (dead-lettered
    on the status topic): the refusal ended the sender task, so the run, and the record came back: a crash loop."""
    [request] = rules.for_event(dossier("refused-1"), directory(), Registry())
    producer = FakeProducer(max_bytes={OUT.dlq: len(deadletters.least(request)[0]) if least_fits else 10})
    channel = FakeChannel(DeliveryError("http_400", retryable=False))
    with capture_logs() as logs:
        async with running(channel, producer=producer, routine=1) as s:
            done = Calls()
            await s.dispatcher.submit(request, done)
            await settle(lambda: done.count == 1, "done")
            assert request.notification_id in s.ledger.done
            assert s.outcomes(request.notification_id)[-1] == ("dead_lettered", 1)
            assert [m.json() for m in s.producer.to(LEDGER)] == [{"state": "done", "outcome": "dead_lettered"}]
            letters = s.producer.to(OUT.dlq)
    assert "0912345678" not in str(logs)
    if least_fits:
        [letter] = letters
        assert letter.json()["notification_id"] == request.notification_id and letter.json()["params"] == {}
        assert letter.headers["dlq.omitted"] == b"params,recipient" and producer.refused == 1
    else:
        assert letters == [] and producer.refused == 2
        [refused] = [e for e in logs if e["event"] == "notify.dead_letter_refused"]
        assert refused["nid"] == request.notification_id
