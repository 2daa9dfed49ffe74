"""The canonical event's traceparent carried through notify (no Kafka): rules put it on every request, the status
record and dead letter keep it, delivery logs name its trace id, providers receive it as a header."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import pytest
from aiohttp import web
from aiokafka import ConsumerRecord
from aiosmtpd.controller import Controller
from structlog.testing import capture_logs

from schemas import trace
from schemas.notification import (
    ChannelKind,
    NotificationKind,
    NotificationRequest,
    NotificationStatus,
    Outcome,
    TrackedDossier,
)
from services.cli.tracer import Tracer
from services.notify import deadlines, outcomes, rules
from services.notify.channels.base import DeliveryError, compose, outgoing_traceparent
from services.notify.channels.email import Smtp
from services.notify.channels.http import HttpClient, SmsGateway, Webhooks, ZaloZns
from services.notify.fake_providers import FakeProviders
from services.notify.subscribers import Registry
from tests.kafkatools import free_port
from tests.notify.events import directory, dossier
from tests.notify.fakes import FakeChannel
from tests.notify.test_dispatcher import OUT, running, settle

pytestmark = pytest.mark.unit

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOOKS = Registry.model_validate({"subscribers": [
    {"name": "prov-08", "url": "http://127.0.0.1:1/hooks/prov-08", "secret": "s3cret", "provinces": ["08"]}]})


def traced(event_id: str = "evt-t1", **kw: Any) -> list[NotificationRequest]:
    """The requests of a dossier event that arrived with the caller's `PARENT` (as the gateway sets it)."""
    event = dossier(event_id, code=f"D-{event_id}", **kw).model_copy(update={"traceparent": PARENT})
    return rules.for_event(event, directory(), HOOKS)


class HeaderProviders(FakeProviders):
    """The fake providers, also keeping the `traceparent` header each Idempotency-Key arrived with."""

    def __init__(self) -> None:
        super().__init__(webhook_secrets={"prov-08": "s3cret"})
        self.traceparents: dict[str, str | None] = {}

    async def _accept(self, request: web.Request, body: dict[str, Any], reply: dict[str, Any]) -> web.Response:
        self.traceparents[request.headers.get("Idempotency-Key", "")] = request.headers.get("traceparent")
        return await super()._accept(request, body, reply)


def test_every_request_of_an_event_carries_its_traceparent_and_an_alert_none() -> None:
    """The applicant's SMS and the webhook of one event both carry the event's traceparent; a deadline alert none."""
    requests = traced()
    assert {r.channel for r in requests} == {ChannelKind.SMS, ChannelKind.WEBHOOK}
    assert {r.traceparent for r in requests} == {PARENT}
    untraced = rules.for_event(dossier("evt-t2"), directory(), Registry())
    assert [r.traceparent for r in untraced] == [trace.derive("/communes/02269/one-stop", "evt-t2")]


def test_the_provider_gets_the_events_trace_id_under_a_parent_id_of_the_notifications_own() -> None:
    """Same trace id and flags, a parent id derived from the notification id (stable across retries), no header
    without a trace."""
    sms, hook = traced()
    out = outgoing_traceparent(sms)
    assert out is not None and trace.is_valid(out) and trace.trace_id(out) == TRACE_ID and out.endswith("-01")
    assert out != PARENT and out == outgoing_traceparent(sms.model_copy())
    assert outgoing_traceparent(hook) not in (None, out)
    assert outgoing_traceparent(sms.model_copy(update={"traceparent": None})) is None


async def test_sms_zalo_and_webhook_calls_carry_the_traceparent_header() -> None:
    """A real local HTTP provider receives `traceparent` on the SMS, the Zalo ZNS and the signed webhook call."""
    fake, http = HeaderProviders(), HttpClient(2)
    await fake.start()
    sms, hook = traced()
    [zalo] = [r for r in traced("evt-t3", applicant={"zalo_user_id": "z-1", "preferred_locale": "vi"})
              if r.channel is ChannelKind.ZALO]
    hooks = Registry.model_validate({"subscribers": [{**HOOKS.subscribers[0].model_dump(), "secret": "s3cret",
                                                      "url": f"{fake.url}/hooks/prov-08"}]})
    try:
        await SmsGateway(http, fake.url).send(compose(sms, 2))
        await ZaloZns(http, fake.url, SmsGateway(http, fake.url)).send(compose(zalo, 2))
        await Webhooks(http, hooks).send(compose(hook, 2))
    finally:
        await http.close()
        await fake.stop()
    assert fake.bad_signatures == 0 and {fake.accepted[r.notification_id].path for r in (sms, zalo, hook)} == {
        "/sms", "/zns/send", "/hooks/prov-08"}
    assert {nid: fake.traceparents[nid] for nid in fake.traceparents} == {
        r.notification_id: outgoing_traceparent(r) for r in (sms, zalo, hook)}


async def test_a_mail_carries_a_traceparent_header_and_keeps_its_message_id() -> None:
    """SMTP: the mail has `Traceparent:` with the event's trace id; the Message-ID is still the notification id."""
    seen: list[Any] = []

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            seen.append(message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        [mail] = traced("evt-t4", applicant={"email": "citizen@example.vn", "preferred_locale": "en"})[:1]
        await Smtp("127.0.0.1", port, "noreply@example.gov.vn", 5).send(compose(mail, 2))
    finally:
        controller.stop()
    [msg] = seen
    assert msg["Traceparent"] == outgoing_traceparent(mail) and trace.trace_id(msg["Traceparent"]) == TRACE_ID
    assert msg["Message-ID"] == f"<{mail.notification_id}@commune-bus>"


async def test_status_records_dead_letters_and_delivery_logs_name_the_trace() -> None:
    """A sent SMS and a dead-lettered one: both status records keep the traceparent, the dead letter too, and the
    `notify.sent` / `notify.dead_lettered` log lines carry `trace_id` (and no phone number)."""
    [ok] = [r for r in traced("evt-t5") if r.channel is ChannelKind.SMS]
    [bad] = [r for r in traced("evt-t6") if r.channel is ChannelKind.SMS]
    channel = FakeChannel(DeliveryError("http_400", retryable=False))
    with capture_logs() as logs:
        async with running(channel) as s:
            await s.dispatcher.submit(bad, lambda: None)
            await s.dispatcher.submit(ok, lambda: None)
            await settle(lambda: len(s.producer.to(OUT.status)) >= 3, "three status records")
    statuses = [m.json() for m in s.producer.to(OUT.status)]
    assert {(x["outcome"], x["traceparent"]) for x in statuses} == {
        ("failed", PARENT), ("dead_lettered", PARENT), ("sent", PARENT)}
    [dead] = s.producer.to(OUT.dlq)
    assert dead.json()["traceparent"] == PARENT
    by_event = {e["event"]: e for e in logs if e["event"].startswith("notify.")}
    assert by_event["notify.sent"]["trace_id"] == TRACE_ID == by_event["notify.dead_lettered"]["trace_id"]
    assert "0912345678" not in repr(logs)


def record(topic: str, value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 1_764_000_000_000 + offset, 0, b"02269", value, None, 5, len(value), [])


def test_trace_finds_a_notification_by_its_trace_id_alone() -> None:
    """`trace <trace id>` finds a status record whose event it has not seen, and shows the trace id on the step."""
    status = NotificationStatus(
        notification_id="n-1", event_id="evt-unseen", rule="dossier.accepted", kind=NotificationKind.DOSSIER_ACCEPTED,
        channel=ChannelKind.SMS, recipient_ref="applicant", commune="02269", outcome=Outcome.SENT, attempt=1,
        at=datetime(2025, 11, 3, tzinfo=UTC), traceparent=PARENT)
    other = status.model_copy(update={"notification_id": "n-2", "traceparent": trace.derive("/x", "y")})
    tracer = Tracer(TRACE_ID)
    for i, s in enumerate((status, other)):
        tracer.notification(record("commune.notify.status", s.model_dump_json().encode(), i))
    [step] = tracer.timeline()
    assert step.stage == "notification" and step.trace == TRACE_ID and "id n-1" in step.what


def test_a_raw_record_is_found_by_its_header_trace_and_comes_first_within_one_millisecond() -> None:
    """`trace <trace id>` finds a raw record by its `ce_traceparent` header; a canonical event written in the same
    millisecond is listed after it (pipeline order), not before it by name."""
    headers = [("ce_id", b"evt-r1"), ("ce_type", b"vn.communebus.dossier.status-changed.v1"),
               ("ce_subject", b"TL-1"), ("ce_traceparent", PARENT.encode())]
    at = 1_764_000_000_000
    raw = ConsumerRecord("commune.raw.dossier", 0, 7, at, 0, b"02269", b"{}", None, 5, 2, headers)
    canonical = ConsumerRecord("commune.events.dossier", 0, 3, at, 0, b"02269", b"x", None, 5, 1, headers)
    tracer = Tracer(TRACE_ID)
    tracer.canonical(canonical)  # offered out of order on purpose
    tracer.raw(raw)
    assert [(s.stage, s.trace) for s in tracer.timeline()] == [("raw", TRACE_ID), ("canonical", TRACE_ID)]
    other = Tracer("0af7651916cd43dd8448eb211c80319c")
    other.raw(raw)
    assert other.timeline() == []


@pytest.mark.parametrize(("event_id", "own_trace", "shown"), [
    ("hs-0912345678", False, False), ("/citizens/079912-345678", False, False), ("evt-t7", False, True),
    ("hs-0912345678", True, True)])
async def test_ids_hashed_from_a_personal_number_are_not_logged(event_id: str, own_trace: bool,
                                                                       shown: bool) -> None:
    """An event without a traceparent of its own gets one derived from its source and id, an unkeyed hash: for an
    id holding a phone or CCCD, trying every number finds it again (0.24 s a million; privacy audit), and logs are
    kept where no erasure reaches. Its `notify.sent` line then has no trace id; a producer's own trace id, or one
    derived from an id that identifies nobody, is logged."""
    event = dossier(event_id, code="D-t7")
    if own_trace:
        event = event.model_copy(update={"traceparent": PARENT})
    [sms] = [r for r in rules.for_event(event, directory(), HOOKS) if r.channel is ChannelKind.SMS]
    assert trace.trace_id(sms.traceparent) is not None
    with capture_logs() as logs:
        async with running(FakeChannel()) as s:
            await s.dispatcher.submit(sms, lambda: None)
            await settle(lambda: len(s.producer.to(OUT.status)) >= 1, "a status record")
    [sent] = [e for e in logs if e["event"] == "notify.sent"]
    assert sent["trace_id"] == (trace.trace_id(sms.traceparent) if shown else None)
    # the notification id is a hash of the same source and id: left out alike, whatever the trace
    assert sent["nid"] == (None if event_id.startswith(("hs-", "/citizens")) else sms.notification_id)


@pytest.mark.parametrize(("code", "shown"), [("TL-251101-0001", True), ("079912345678", False),
                                             ("hs0912.345678", False)])
def test_an_alert_for_a_dossier_code_holding_a_personal_number_logs_no_notification_id(code: str,
                                                                                      shown: bool) -> None:
    """A deadline alert's id holds its dossier's code, a producer's text, and has no source: its notification id (an
    unkeyed hash of it) was logged whatever the code held (second privacy audit)."""
    tracked = TrackedDossier(dossier_code=code, commune="02269", province="08", procedure_code="1", officer_id="cb-01",
                             due_at=datetime(2025, 11, 10, 10, 0, tzinfo=UTC))
    [alert] = deadlines.alerts_due(tracked, datetime(2025, 11, 11, tzinfo=UTC))
    for request in rules.for_alert(alert, directory()):
        assert outcomes.ids(request) == {"nid": request.notification_id if shown else None, "trace_id": None}
