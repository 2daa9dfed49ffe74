"""Each channel against a real local server (no Kafka): ZNS, SMS fallback, SMTP, signed webhooks, slow providers."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from schemas.codes import Locale, Priority
from schemas.notification import ChannelKind
from services.notify import rules
from services.notify.channels.base import DeliveryError, compose
from services.notify.channels.email import Smtp
from services.notify.channels.http import HttpClient, SmsGateway, Webhooks, ZaloZns
from services.notify.fake_providers import FakeProviders
from services.notify.subscribers import Registry
from services.notify.zns import LOCAL
from tests.kafkatools import free_port
from tests.notify.conftest import MailSink
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit

ZALO_APPLICANT = {"phone": "0911111111", "zalo_user_id": "z-1", "preferred_locale": "vi"}


def request(**kw: object):  # type: ignore[no-untyped-def]
    [r] = [x for x in rules.for_event(dossier(**kw), directory(), Registry()) if x.channel is not ChannelKind.WEBHOOK]
    return r


async def test_zns_gets_template_id_parameters_and_tracking_id(fake: FakeProviders) -> None:
    """A Zalo recipient gets a ZNS template message; the tracking id is the notification id."""
    http = HttpClient(2)
    r = request(applicant=ZALO_APPLICANT)
    receipt = await ZaloZns(http, fake.url, SmsGateway(http, fake.url)).send(compose(r, 2))
    await http.close()
    sent = fake.accepted[r.notification_id]
    assert sent.path == "/zns/send" and receipt.via == "zalo"
    assert sent.body["template_id"] == LOCAL.templates[r.kind][Locale.VI]
    assert sent.body["tracking_id"] == r.notification_id
    assert sent.body["template_data"]["dossier_code"] == "TL-251101-0002"


async def test_zns_error_falls_back_to_sms() -> None:
    """ZNS answering an error code (user not on Zalo) makes the channel send the SMS instead."""
    fake = FakeProviders()

    async def zns_refuses(_: web.Request) -> web.Response:
        return web.json_response({"error": -124, "message": "user not found"})

    fake.zns = zns_refuses  # type: ignore[method-assign]
    await fake.start()
    http = HttpClient(2)
    try:
        r = request(applicant=ZALO_APPLICANT)
        receipt = await ZaloZns(http, fake.url, SmsGateway(http, fake.url)).send(compose(r, 2))
    finally:
        await http.close()
        await fake.stop()
    assert receipt.via == "sms" and fake.accepted[r.notification_id].path == "/sms"


async def zns_answering(answer: str) -> FakeProviders:
    """Local providers whose ZNS endpoint answers `answer`: an HTTP status, `timeout` or `disconnect`."""
    fake = FakeProviders()

    async def zns(request: web.Request) -> web.Response:
        if answer == "timeout":
            await asyncio.sleep(2)  # Zalo may have delivered: we only never hear it
        if answer == "disconnect":
            assert request.transport is not None
            request.transport.close()
        return web.json_response({"error": "busy"}, status=int(answer) if answer.isdigit() else 200)

    fake.zns = zns  # type: ignore[method-assign]
    await fake.start()
    return fake


@pytest.mark.parametrize("answer", ["429", "500", "503", "timeout", "disconnect"])
async def test_a_zns_call_with_an_unknown_outcome_is_retried_as_zns_not_sent_by_sms(answer: str) -> None:
    """A ZNS timeout, disconnect, 5xx or 429 (Zalo may have delivered it, or asks us to slow down) is a retryable
    failure of the Zalo channel, which the dispatcher retries as ZNS: no SMS is sent. It went by SMS at once, so the
    citizen could get it twice, on two providers, the second outside the SMS rate bucket."""
    fake = await zns_answering(answer)
    http = HttpClient(0.5)
    try:
        r = request(applicant=ZALO_APPLICANT)
        with pytest.raises(DeliveryError) as failed:
            await ZaloZns(http, fake.url, SmsGateway(http, fake.url)).send(compose(r, 2))
    finally:
        await http.close()
        await fake.stop()
    assert failed.value.retryable and fake.texts("/sms") == [] and not fake.accepted


@pytest.mark.parametrize("answer", ["429", "503", "timeout", "disconnect"])
async def test_an_emergency_zns_call_with_an_unknown_outcome_falls_back_to_sms_under_the_same_key(answer: str) -> None:
    """A storm warning ZNS may or may not have taken (timeout, disconnect, 5xx, 429) is sent by SMS at once, under the
    ZNS call's Idempotency-Key, and says ZNS failed (for Zalo's circuit): a possible second message beats silence while
    ZNS is down (audit: it was retried as ZNS only, for its whole budget, then parked)."""
    fake = await zns_answering(answer)
    http = HttpClient(0.5)
    try:
        r = request(applicant=ZALO_APPLICANT).model_copy(update={"priority": Priority.EMERGENCY})
        receipt = await ZaloZns(http, fake.url, SmsGateway(http, fake.url)).send(compose(r, 2))
    finally:
        await http.close()
        await fake.stop()
    assert receipt.via == "sms" and fake.accepted[r.delivery_key].path == "/sms"
    assert receipt.fell_back is not None and receipt.fell_back.answered is False


@pytest.mark.parametrize("answer", ["400", "403", "unreachable"])
async def test_a_zns_call_known_not_delivered_falls_back_to_sms(answer: str) -> None:
    """A definite refusal (a 4xx other than 429: the request was not taken) or a ZNS that cannot be connected to
    (the request never left) sends the SMS instead, as an error code does."""
    fake = await zns_answering(answer)
    http = HttpClient(2)
    zns_url = f"http://127.0.0.1:{free_port()}" if answer == "unreachable" else fake.url
    try:
        r = request(applicant=ZALO_APPLICANT)
        receipt = await ZaloZns(http, zns_url, SmsGateway(http, fake.url)).send(compose(r, 2))
    finally:
        await http.close()
        await fake.stop()
    assert receipt.via == "sms" and fake.accepted[r.notification_id].path == "/sms"


@pytest.mark.parametrize(("error", "reason"), [(-124, "zns_error_-124"),
                                                ("user 0911111111 not found", "reply_unreadable"),
                                                ({"phone": "0911111111"}, "reply_unreadable"),
                                                (10**12, "zns_error_unexpected"), (True, "reply_unreadable")])
async def test_a_zns_error_reason_is_its_code_never_what_the_provider_echoed(error: object, reason: str) -> None:
    """Without a phone to fall back to, the ZNS error is the delivery's reason, logged and published: the
    provider's code if it is one of at most 9 digits, else a fixed word (an error text may quote the recipient; a
    number may have thousands of digits); an `error` that is no integer says nothing, `reply_unreadable`."""
    fake = FakeProviders()

    async def zns_refuses(_: web.Request) -> web.Response:
        return web.json_response({"error": error})

    fake.zns = zns_refuses  # type: ignore[method-assign]
    await fake.start()
    http = HttpClient(2)
    try:
        r = request(applicant={"zalo_user_id": "z-1", "preferred_locale": "vi"})
        with pytest.raises(DeliveryError) as failed:
            await ZaloZns(http, fake.url, SmsGateway(http, fake.url)).send(compose(r, 2))
    finally:
        await http.close()
        await fake.stop()
    assert failed.value.reason == reason


async def test_slow_provider_times_out_as_a_retryable_failure(fake: FakeProviders) -> None:
    """A provider slower than the timeout is a retryable failure, not a hang."""
    fake.faults.delay_s = 1.0
    http = HttpClient(0.2)
    with pytest.raises(DeliveryError) as err:
        await SmsGateway(http, fake.url).send(compose(request(), 2))
    await http.close()
    assert err.value.retryable and err.value.reason == "TimeoutError"


async def test_server_errors_are_retryable_and_client_errors_are_not(fake: FakeProviders) -> None:
    """5xx -> retry later; a 401 from a subscriber rejecting the signature -> dead letter, no retry."""
    http = HttpClient(2)
    fake.faults.fail_every = 1
    with pytest.raises(DeliveryError) as server:
        await SmsGateway(http, fake.url).send(compose(request(), 2))
    fake.faults.fail_every = 0
    reg = Registry.model_validate(
        {"subscribers": [{"name": "prov-08", "url": f"{fake.url}/hooks/prov-08", "secret": "wrong"}]})
    hook = next(x for x in rules.for_event(dossier(), directory(), reg) if x.channel is ChannelKind.WEBHOOK)
    with pytest.raises(DeliveryError) as client:
        await Webhooks(http, reg).send(compose(hook, 2))
    await http.close()
    assert (server.value.reason, server.value.retryable) == ("http_500", True)
    assert (client.value.reason, client.value.retryable) == ("http_401", False) and fake.bad_signatures == 1


async def test_a_subscriber_redirect_is_refused_not_followed() -> None:
    """A subscriber answering 307 to an internal address: the signed body is not re-sent there (no redirect is
    followed), and the delivery fails for good (http_307, a dead letter), where before it went on to the target."""
    hits: list[str] = []

    async def redirect(_: web.Request) -> web.Response:
        hits.append("hook")
        raise web.HTTPTemporaryRedirect("/internal")

    async def internal(_: web.Request) -> web.Response:
        hits.append("internal")
        return web.json_response({"ok": True})

    server = web.Application()
    server.add_routes([web.post("/hook", redirect), web.post("/internal", internal)])
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = HttpClient(2)
    try:
        reg = Registry.model_validate(
            {"subscribers": [{"name": "prov-08", "url": f"http://127.0.0.1:{port}/hook", "secret": "s3"}]})
        hook = next(x for x in rules.for_event(dossier(), directory(), reg) if x.channel is ChannelKind.WEBHOOK)
        with pytest.raises(DeliveryError) as refused:
            await Webhooks(http, reg).send(compose(hook, 2))
    finally:
        await http.close()
        await runner.cleanup()
    assert (refused.value.reason, refused.value.retryable) == ("http_307", False)
    assert hits == ["hook"]


async def test_email_carries_the_notification_id_as_message_id() -> None:
    """Staff e-mail goes over SMTP with Message-ID <notification id@commune-bus>, the rendered text, and the time it
    was sent in Vietnam time (`Date`, which RFC 5322 requires)."""
    from aiosmtpd.controller import Controller

    sink, port = MailSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        r = request(applicant={"email": "citizen@example.vn", "preferred_locale": "en"})
        await Smtp("127.0.0.1", port, "noreply@example.gov.vn", 5).send(compose(r, 2))
    finally:
        controller.stop()
    assert dict(sink.by_id) == {r.notification_id: 1}
    assert sink.bodies[r.notification_id].startswith("Your dossier TL-251101-0002")
    date = sink.dates[r.notification_id]
    assert date is not None and date.endswith(" +0700"), date


class SlowMailSink(MailSink):
    """Answers MAIL, RCPT and DATA each after `delay_s`: every command within a per-command timeout, the three
    together past it."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def handle_MAIL(self, server: object, session: object, envelope: object, address: str,
                          options: list[str]) -> str:
        await asyncio.sleep(self.delay_s)
        envelope.mail_from, envelope.mail_options = address, options  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_RCPT(self, server: object, session: object, envelope: object, address: str,
                          options: list[str]) -> str:
        await asyncio.sleep(self.delay_s)
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("delay_s", [0.0, 0.45])
async def test_an_email_call_ends_within_the_provider_timeout_however_its_server_answers(delay_s: float) -> None:
    """The provider timeout bounds the whole SMTP call, as it bounds an HTTP request: a server answering MAIL, RCPT
    and DATA each 0.45 s late, within a 1 s timeout per command, held the call ~1.4 s (aiosmtplib's `timeout` is per
    command) and delivered the mail, a call the revocation's drain, counting on the provider timeout, did not wait
    for (ADR 0012). Now it fails, retryable, before DATA; the same server answering at once still gets the mail."""
    from aiosmtpd.controller import Controller

    sink, port = SlowMailSink(delay_s), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    r = request(applicant={"email": "citizen@example.vn", "preferred_locale": "en"})
    try:
        if delay_s:
            with pytest.raises(DeliveryError) as failed:
                await Smtp("127.0.0.1", port, "noreply@example.gov.vn", 1.0).send(compose(r, 2))
            assert (failed.value.reason, failed.value.retryable) == ("TimeoutError", True)
        else:
            await Smtp("127.0.0.1", port, "noreply@example.gov.vn", 1.0).send(compose(r, 2))
    finally:
        controller.stop()
    assert dict(sink.by_id) == ({} if delay_s else {r.notification_id: 1})


class SilentAtQuit(MailSink):
    """Takes the mail, then leaves QUIT unanswered for longer than any provider timeout here."""

    async def handle_QUIT(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(30)
        return "221 Bye"


async def test_a_mail_taken_by_its_server_is_sent_whatever_becomes_of_quit() -> None:
    """Once the server took the mail, a QUIT left unanswered is no failure of the call: a receipt, within the provider
    timeout (a failure would be retried, and the mail arrive twice)."""
    from aiosmtpd.controller import Controller

    sink, port = SilentAtQuit(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    r = request(applicant={"email": "citizen@example.vn", "preferred_locale": "en"})
    try:
        async with asyncio.timeout(5):
            receipt = await Smtp("127.0.0.1", port, "noreply@example.gov.vn", 1.0).send(compose(r, 2))
    finally:
        controller.stop()
    assert (receipt.via, dict(sink.by_id)) == ("email", {r.notification_id: 1})


async def test_an_http_call_ends_within_the_provider_timeout_not_at_the_next_whole_second() -> None:
    """A provider timeout of 5 s bounds an HTTP call to 5 s: aiohttp rounded it up to the loop clock's next whole
    second, so a gateway accepting the SMS 5.5 s after a call began (just after a whole second) still gave a receipt,
    a call the revocation's drain, counting on the provider timeout, did not wait for (ADR 0012). Now it fails,
    retryable, before the acceptance."""
    async def late(_: web.Request) -> web.Response:
        await asyncio.sleep(5.5)
        return web.json_response({"message_id": "m-1"})

    app = web.Application()
    app.router.add_post("/sms", late)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = HttpClient(5.0)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(1.05 - loop.time() % 1)  # just past a whole second: rounded up, the call had ~5.95 s
        with pytest.raises(DeliveryError) as failed:
            await SmsGateway(http, f"http://127.0.0.1:{port}").send(compose(request(), 2))
    finally:
        await http.close()
        await runner.cleanup()
    assert (failed.value.reason, failed.value.retryable) == ("TimeoutError", True)


async def test_every_channel_names_a_replay_by_the_original_key_it_carries(fake: FakeProviders) -> None:
    """A replay that keeps the original's delivery key (ADR 0033) is named by it at every provider: SMS and ZNS
    Idempotency-Key, ZNS tracking id, a webhook's id (signed, as the subscriber checks it) and e-mail's Message-ID; the
    notification id itself goes nowhere. The provider that has the message answers it as a repeat."""
    from aiosmtpd.controller import Controller

    key = "0f" * 16
    fake.webhook_secrets["prov-08"] = "s3cret"
    reg = Registry.model_validate(
        {"subscribers": [{"name": "prov-08", "url": f"{fake.url}/hooks/prov-08", "secret": "s3cret"}]})
    hook = next(x for x in rules.for_event(dossier(), directory(), reg) if x.channel is ChannelKind.WEBHOOK)
    sms, zns = request(), request(applicant=ZALO_APPLICANT)
    http = HttpClient(2)
    try:
        zalo = ZaloZns(http, fake.url, SmsGateway(http, fake.url))
        for r, channel in [(sms, SmsGateway(http, fake.url)), (zns, zalo), (hook, Webhooks(http, reg))]:
            fake.accepted.clear()
            fake.replays.clear()
            await channel.send(compose(r, 2))
            replay = r.model_copy(update={"notification_id": "f0" * 16, "idempotency_key": r.notification_id})
            await channel.send(compose(replay, 2))
            assert list(fake.accepted) == [r.notification_id] and fake.replays[r.notification_id] == 1, r.channel
            fake.accepted.clear()
            await channel.send(compose(replay.model_copy(update={"idempotency_key": key}), 2))
            [(got, sent)] = fake.accepted.items()
            assert got == key and sent.body.get("tracking_id", key) == key, r.channel
    finally:
        await http.close()
    assert fake.bad_signatures == 0 and "f0" * 16 not in {k for k, _ in fake.arrivals}
    sink, port = MailSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mail = request(applicant={"email": "citizen@example.vn", "preferred_locale": "en"})
        await Smtp("127.0.0.1", port, "noreply@example.gov.vn", 5).send(compose(mail.model_copy(
            update={"notification_id": "f0" * 16, "idempotency_key": key}), 2))
    finally:
        controller.stop()
    assert dict(sink.by_id) == {key: 1}


async def test_a_webhook_made_for_an_entitled_subscriber_is_sent_without_the_applicant_once_it_no_longer_is(
        fake: FakeProviders) -> None:
    """A dossier webhook made while its subscriber was entitled to the applicant (`include_personal_data`), sent once
    the registry says it no longer is (parked or dead-lettered meanwhile, then released or replayed): the event goes
    without its applicant block; it went opened, in clear, to a subscriber that may not hold it (privacy audit). The
    same registry entitled, it goes whole."""
    url = f"{fake.url}/hooks/prov-08"
    entitled = Registry.model_validate(
        {"subscribers": [{"name": "prov-08", "url": url, "secret": "s3cret", "include_personal_data": True}]})
    withdrawn = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": url, "secret": "s3cret"}]})
    hook = next(x for x in rules.for_event(dossier(), directory(), entitled) if x.channel is ChannelKind.WEBHOOK)
    assert '"applicant"' in (hook.payload or "")
    http = HttpClient(2)
    try:
        for registry, event_id in ((withdrawn, "withdrawn"), (entitled, "entitled")):
            sent = hook.model_copy(update={"notification_id": event_id, "delivery_key": event_id})
            await Webhooks(http, registry).send(compose(sent, 2))
    finally:
        await http.close()
    data = {r.key: r.body["event"]["data"] for r in fake.accepted.values() if r.path == "/hooks/prov-08"}
    assert "applicant" not in data["withdrawn"] and data["withdrawn"]["dossier_code"] == "TL-251101-0002"
    assert data["entitled"]["applicant"]["name"] == "Trần Văn Minh"
