"""What a provider answers, against real local servers (no Kafka): ids kept only when short and plain, reply
bodies read only up to a bound and for a bounded time, webhook replies not read at all, whatever the server sends;
a 2xx whose body cannot be read is an acceptance (SMS, webhook), never a retry that could send twice."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from schemas.notification import ChannelKind
from services.notify import metrics, rules
from services.notify.channels import replies
from services.notify.channels.base import DeliveryError, Receipt, compose
from services.notify.channels.http import HttpClient, SmsGateway, Webhooks, ZaloZns
from services.notify.subscribers import Registry
from services.notify.templates import ZNS_PARAM_CHARS
from tests.kafkatools import free_port
from tests.notify.events import PHONE, directory, dossier
from tests.notify.fakes import Calls
from tests.notify.test_dispatcher import OUT, running, settle

pytestmark = pytest.mark.unit

HUGE = 50 * 1024 * 1024
"""A hostile reply body: 50 MB (a 400 MB webhook reply took a notify worker from 109 MB to 887 MB RSS)."""
PEAK = 1024 * 1024
"""What one call may allocate at most while such a reply streams in: the read bound (64 KiB) and aiohttp's
buffers (twice its 64 KiB chunk), with room to spare, and far below the reply."""
CHUNK = b" " * 65536

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Streamed:
    """A handler that answers 200 with `size` bytes of JSON whitespace and then `{"message_id":"big-1"}`, in 64 KiB
    writes (with a Content-Length or chunked), and records how much it could write before the client left."""

    def __init__(self, size: int, with_length: bool) -> None:
        self.size, self.with_length = size, with_length
        self.written, self.finished = 0, False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = b'{"message_id":"big-1"}'
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.with_length:
            resp.content_length = self.size + len(tail)
        await resp.prepare(request)
        try:
            while self.written < self.size:
                await resp.write(CHUNK)
                self.written += len(CHUNK)
            await resp.write(tail)
            await resp.write_eof()
            self.finished = True
        except (ConnectionError, RuntimeError):  # the client closed the connection: what a bounded read does
            pass
        return resp


@asynccontextmanager
async def serve(**routes: Handler) -> AsyncIterator[str]:
    """A local HTTP server with `routes` (path without the leading slash → handler); yields its base URL."""
    app = web.Application()
    app.add_routes([web.post(f"/{path.replace('__', '/')}", h) for path, h in routes.items()])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def answering(reply: object) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(reply)

    return handler


def sms_request():  # type: ignore[no-untyped-def]
    [r] = [x for x in rules.for_event(dossier(), directory(), Registry()) if x.channel is ChannelKind.SMS]
    return r


async def sms_receipt(reply: object):  # type: ignore[no-untyped-def]
    async with serve(sms=answering(reply)) as url:
        http = HttpClient(10)
        try:
            return await SmsGateway(http, url).send(compose(sms_request(), 2))
        finally:
            await http.close()


PHONE_AND_ESCAPES = "phone=0912345678\r\nX-Injected: 1 \u001b[31mRED"


@pytest.mark.parametrize("message_id", [
    "x" * (11 * 1024 * 1024),  # 11 MB: its status record was refused for its size and the run ended
    "x" * 129,
    PHONE_AND_ESCAPES,
    "phone=0912345678",
    "citizen@example.vn",
    "0912345678 Trần Văn Minh",
    "sms-1\u202e",  # a bidi override
    {"phone": "0912345678"},
    ["sms-1"],
    True,
    10**30,  # read as a float, 1e+30
])
async def test_a_provider_id_that_is_not_short_and_plain_is_not_kept(message_id: object) -> None:
    """An SMS gateway accepting the message with an id that is long, holds controls, spaces or `=`/`@`, or is no
    string: the send succeeds (the gateway took it) and the receipt holds no id, only why (the 11 MB reply was not
    even read); before, it held whatever came."""
    receipt = await sms_receipt({"message_id": message_id})
    assert receipt.via == "sms" and receipt.provider_message_id is None
    too_large = isinstance(message_id, str) and len(message_id) > 64 * 1024
    assert receipt.reply_refused == ("reply_too_large" if too_large else "provider_id_refused")


@pytest.mark.parametrize(("message_id", "kept"), [
    ("sms-0a1b2c3d", "sms-0a1b2c3d"), ("6f1c0e52-7b1d-4a53-9c1e-0d6b1f4f2a11", "6f1c0e52-7b1d-4a53-9c1e-0d6b1f4f2a11"),
    ("SM.abc_DEF:42", "SM.abc_DEF:42"), ("x" * 128, "x" * 128), (1234567, "1234567"),
])
async def test_a_short_plain_provider_id_is_kept(message_id: object, kept: str) -> None:
    """Ids as providers make them (a prefix and hex, a UUID, a number, up to 128 characters) are kept as they are."""
    receipt = await sms_receipt({"message_id": message_id})
    assert receipt.provider_message_id == kept and receipt.reply_refused is None


@pytest.mark.parametrize("reply", [{}, {"message_id": None}, {"message_id": ""}, [1, 2], "ok"])
async def test_a_reply_without_an_id_gives_a_receipt_without_one(reply: object) -> None:
    """No id answered, or a reply that is no JSON object: sent, without an id (None, never an empty string)."""
    receipt = await sms_receipt(reply)
    assert receipt.provider_message_id is None and receipt.reply_refused is None


async def test_a_zns_msg_id_that_is_not_plain_is_not_kept() -> None:
    """Zalo ZNS accepting the message with a `msg_id` holding a line break and a phone: sent, no id kept."""
    async with serve(zns__send=answering({"error": 0, "data": {"msg_id": PHONE_AND_ESCAPES}})) as url:
        http = HttpClient(5)
        try:
            [r] = [x for x in rules.for_event(
                dossier(applicant={"zalo_user_id": "z-1", "phone": "0911111111", "preferred_locale": "vi"}),
                directory(), Registry()) if x.channel is ChannelKind.ZALO]
            receipt = await ZaloZns(http, url, SmsGateway(http, url)).send(compose(r, 2))
        finally:
            await http.close()
    assert receipt.via == "zalo" and receipt.provider_message_id is None
    assert receipt.reply_refused == "provider_id_refused"


@pytest.mark.parametrize("message_id", [PHONE, "84912345678", 84912345678, 912345678, "msg-912345678-1",
                                        "0912.345.678", "id:0912_345_678"])
async def test_a_provider_id_echoing_the_recipients_phone_is_not_kept(message_id: object) -> None:
    """An SMS gateway numbering its receipts by the phone it sent to: the id is plain, but would put the citizen's
    number on the status topic every subscriber reads, beside the event's id (privacy audit: it was kept)."""
    receipt = await sms_receipt({"message_id": message_id})
    assert (receipt.provider_message_id, receipt.reply_refused) == (None, "provider_id_refused")


@pytest.mark.parametrize("written", ["0084912345678", "+84 (0) 912 345 678", "84 0912 345 678"])
@pytest.mark.parametrize("message_id", ["0912345678-1", "sms_0912.345.678", "84912345678-1"])
def test_an_echo_is_found_however_the_recipients_phone_is_written(written: str, message_id: str) -> None:
    """The phone in its domestic form, whatever country-code spelling the recipient's holds (review: `0084...` and
    `+84 (0)...` let an echo through)."""
    assert replies.provider_id(message_id, (written,)) == replies.ProviderId(None, refused=True)
    assert replies.provider_id("sms-1", (written,)) == replies.ProviderId("sms-1")


async def test_zns_echoing_the_zalo_id_or_answering_a_phone_sized_error_code_keeps_neither() -> None:
    """A `msg_id` holding the recipient's Zalo id is not kept; an error code of 9 digits (a mobile number without its
    0) is no code: the reason, logged and published, says `unexpected`."""
    zalo_id = "8312470051297341"
    [r] = [x for x in rules.for_event(dossier(applicant={"zalo_user_id": zalo_id, "preferred_locale": "vi"}),
                                      directory(), Registry()) if x.channel is ChannelKind.ZALO]
    http = HttpClient(5)
    try:
        async with serve(zns__send=answering({"error": 0, "data": {"msg_id": f"zns-{zalo_id}"}})) as url:
            receipt = await ZaloZns(http, url, SmsGateway(http, url)).send(compose(r, 2))
        assert (receipt.provider_message_id, receipt.reply_refused) == (None, "provider_id_refused")
        async with serve(zns__send=answering({"error": 912345678})) as url:
            with pytest.raises(DeliveryError) as refused:
                await ZaloZns(http, url, SmsGateway(http, url)).send(compose(r, 2))
        assert refused.value.reason == "zns_error_unexpected"
    finally:
        await http.close()


async def test_zns_template_data_is_one_clean_line_within_what_a_template_takes() -> None:
    """A rejection reason holding CR/LF, a right-to-left override and a bell, and a long procedure name, reach ZNS's
    template data as one line without them, each value at most `ZNS_PARAM_CHARS` (before: as they came, up to 1,000
    characters, which Zalo refuses past a template's registered length; notify audit)."""
    taken: list[dict[str, object]] = []

    async def capture(request: web.Request) -> web.StreamResponse:
        taken.append(await request.json())
        return web.json_response({"error": 0, "data": {"msg_id": "zns-1"}})

    reason = "Thiếu giấy tờ\r\n\u202eđã nộp đủ\u202c \u200bXin liên hệ\x07 " + "rất dài " * 120
    event = dossier(status=3, rejection_reason=reason, rejected_at="2025-11-03T02:00:00Z", received_at=None,
                    due_at=None, procedure_name="Đăng ký khai sinh " * 20,
                    applicant={"zalo_user_id": "z-8312470051", "preferred_locale": "vi"})
    [r] = [x for x in rules.for_event(event, directory(), Registry()) if x.channel is ChannelKind.ZALO]
    http = HttpClient(5)
    try:
        async with serve(zns__send=capture) as url:
            await ZaloZns(http, url, SmsGateway(http, url)).send(compose(r, 2))
    finally:
        await http.close()
    [body] = taken
    data = body["template_data"]
    assert isinstance(data, dict) and data.keys() == r.params.keys()
    for value in data.values():
        assert 0 < len(value) <= ZNS_PARAM_CHARS, value
        assert not set(value) & {"\r", "\n", "\x07", "\u202e", "\u202c"}, value
    assert data["reason"].startswith("Thiếu giấy tờ đã nộp đủ") and data["reason"].endswith("…")
    assert data["dossier_code"] == r.params["dossier_code"]


async def test_a_deeply_nested_reply_is_no_crash() -> None:
    """A reply of 60,000 nested arrays (within the read bound): no JSON object, so sent without an id; before, the
    parser's RecursionError escaped the channel and the request was dead-lettered as an internal error."""
    async def nested(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=b"[" * 60000, content_type="application/json")

    async with serve(sms=nested) as url:
        http = HttpClient(5)
        try:
            receipt = await SmsGateway(http, url).send(compose(sms_request(), 2))
        finally:
            await http.close()
    assert receipt.provider_message_id is None


async def peak_of(http: HttpClient, call: Callable[[], Awaitable[object]]) -> tuple[object, int]:
    """`call`'s result (or the DeliveryError it raised) and the most memory Python allocated meanwhile (the
    client's session made before: its one-off set-up is no part of reading a reply)."""
    assert http.session is not None
    tracemalloc.start()
    try:
        try:
            result: object = await call()
        except DeliveryError as err:
            result = err
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_50_mb_sms_gateway_reply_is_not_read(with_length: bool) -> None:
    """An SMS gateway answering 200 with 50 MB: the channel reads at most its bound and gives up the connection,
    allocating under 1 MB; the SMS counts as sent (a 2xx is the gateway's acceptance; a retry could send it
    twice), without an id, `reply_too_large`. Before, the whole body was read (a peak over 100 MB) and parsed."""
    body = Streamed(HUGE, with_length)
    async with serve(sms=body.handle) as url:
        http = HttpClient(30)
        try:
            message, channel = compose(sms_request(), 2), SmsGateway(http, url)
            result, peak = await peak_of(http, lambda: channel.send(message))
        finally:
            await http.close()
    assert peak < PEAK, f"{peak} bytes allocated"
    assert isinstance(result, Receipt), result
    assert (result.provider_message_id, result.reply_refused) == (None, "reply_too_large")
    assert not body.finished and body.written < HUGE


async def test_a_50_mb_zns_reply_is_not_read_and_is_retried_as_zns() -> None:
    """Zalo answering 200 with 50 MB: ZNS says in the body whether it took the message, so the outcome is unknown:
    a retryable `reply_too_large` (retried as ZNS, as after a timeout), no SMS sent, under 1 MB allocated."""
    body = Streamed(HUGE, with_length=False)
    sms: list[str] = []

    async def sms_gateway(request: web.Request) -> web.StreamResponse:
        sms.append(await request.text())
        return web.json_response({"message_id": "sms-1"})

    async with serve(zns__send=body.handle, sms=sms_gateway) as url:
        http = HttpClient(30)
        [r] = [x for x in rules.for_event(
            dossier(applicant={"zalo_user_id": "z-1", "phone": "0911111111", "preferred_locale": "vi"}),
            directory(), Registry()) if x.channel is ChannelKind.ZALO]
        try:
            message, zns = compose(r, 2), ZaloZns(http, url, SmsGateway(http, url))
            result, peak = await peak_of(http, lambda: zns.send(message))
        finally:
            await http.close()
    assert peak < PEAK, f"{peak} bytes allocated"
    assert isinstance(result, DeliveryError), result
    assert (result.reason, result.retryable, result.not_delivered) == ("reply_too_large", True, False)
    assert sms == [] and not body.finished


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_webhook_subscribers_50_mb_reply_is_not_read(with_length: bool) -> None:
    """A subscriber answering 200 with 50 MB: delivered (its body means nothing to us), the body left unread and
    the connection closed; under 1 MB allocated. Before, the 50 MB were read and thrown away."""
    body = Streamed(HUGE, with_length)
    async with serve(hooks__prov=body.handle) as url:
        reg = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": f"{url}/hooks/prov", "secret": "s"}]})
        hook = next(x for x in rules.for_event(dossier(), directory(), reg) if x.channel is ChannelKind.WEBHOOK)
        http = HttpClient(30)
        try:
            message, webhooks = compose(hook, 2), Webhooks(http, reg)
            result, peak = await peak_of(http, lambda: webhooks.send(message))
        finally:
            await http.close()
    assert peak < PEAK, f"{peak} bytes allocated"
    assert not isinstance(result, DeliveryError), result
    assert not body.finished and body.written < HUGE


async def test_a_small_webhook_reply_is_drained_and_the_connection_reused() -> None:
    """A subscriber's usual short reply is read to its end (a few bytes), so the next delivery reuses the
    connection rather than opening one per event."""
    peers: list[object] = []

    async def hook(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"ok": True})

    async with serve(hooks__prov=hook) as url:
        reg = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": f"{url}/hooks/prov", "secret": "s"}]})
        http = HttpClient(5)
        try:
            for i in range(2):
                hook_request = next(x for x in rules.for_event(dossier(f"e-{i}"), directory(), reg)
                                    if x.channel is ChannelKind.WEBHOOK)
                await Webhooks(http, reg).send(compose(hook_request, 2))
        finally:
            await http.close()
    assert len(peers) == 2 and peers[0] == peers[1]


FREE_WITHIN = replies.READ_S + 1.0
"""A send worker given a 2xx whose body cannot be read is free again within the read deadline and this margin;
the request timeout of these tests is 10 s (before, the worker was held for all of it)."""
UNREADABLE_MODES = ["drip", "cut", "cut-chunked", "bad-gzip", "bad-br"]


class Unreadable:
    """A provider answering 200 whose body cannot be read: `drip` (chunked JSON whitespace, a byte every 0.3 s,
    for up to 12 s), `cut` (a Content-Length of 1,000, 15 bytes sent, then the connection closed), `cut-chunked`
    (one chunk, then the connection closed), `bad-gzip` (a body said to be gzip that is not) or `bad-br` (said to be
    brotli, which the client cannot decode: before, aiohttp raised before the reply was returned, and the SMS was
    retried, review). Counts requests."""

    def __init__(self, mode: str) -> None:
        self.mode, self.requests = mode, 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        if self.mode in ("bad-gzip", "bad-br"):
            return web.Response(body=b"this is not compressed", headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip" if self.mode == "bad-gzip" else "br"})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.mode == "cut":
            resp.content_length = 1000
        await resp.prepare(request)
        try:
            if self.mode == "drip":
                for _ in range(40):
                    await resp.write(b" ")
                    await asyncio.sleep(0.3)
            else:
                await resp.write(b'{"message_id":"')
                assert request.transport is not None
                request.transport.close()
        except (ConnectionError, RuntimeError):  # the client left: what a bounded read does
            pass
        return resp


async def timed(call: Callable[[], Awaitable[Receipt]]) -> tuple[Receipt | DeliveryError, float]:
    """`call`'s receipt (or the DeliveryError it raised) and how long it held its caller, in seconds."""
    start = time.monotonic()
    try:
        result: Receipt | DeliveryError = await call()
    except DeliveryError as err:
        result = err
    return result, time.monotonic() - start


@pytest.mark.parametrize("mode", UNREADABLE_MODES)
async def test_an_sms_gateway_2xx_whose_body_cannot_be_read_is_sent_once(mode: str) -> None:
    """An SMS gateway answering 200, then dripping its body, cutting it off or sending it badly encoded: the gateway
    accepted the SMS, so the channel answers sent, without an id, `reply_unreadable`, after one request, within the
    read deadline. Before, the failed read was a retryable DeliveryError (TimeoutError, ClientPayloadError): the
    SMS was sent again, and a dripping body held the worker for the whole request timeout."""
    provider = Unreadable(mode)
    async with serve(sms=provider.handle) as url:
        http = HttpClient(10)
        try:
            message, channel = compose(sms_request(), 2), SmsGateway(http, url)
            result, held = await timed(lambda: channel.send(message))
        finally:
            await http.close()
    assert isinstance(result, Receipt), result
    assert (result.via, result.provider_message_id, result.reply_refused) == ("sms", None, "reply_unreadable")
    assert provider.requests == 1 and held < FREE_WITHIN, held


@pytest.mark.parametrize("mode", UNREADABLE_MODES)
async def test_a_webhook_2xx_whose_body_cannot_be_read_is_delivered_once(mode: str) -> None:
    """A subscriber answering 200, then a body that drips, is cut off or badly encoded: delivered (the status code
    says it all), counted as `reply_unreadable`, one request, the worker free within the read deadline. Before, a
    retryable failure: the signed event was posted again."""
    provider = Unreadable(mode)
    async with serve(hooks__prov=provider.handle) as url:
        reg = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": f"{url}/hooks/prov", "secret": "s"}]})
        hook = next(x for x in rules.for_event(dossier(), directory(), reg) if x.channel is ChannelKind.WEBHOOK)
        http = HttpClient(10)
        try:
            message, webhooks = compose(hook, 2), Webhooks(http, reg)
            result, held = await timed(lambda: webhooks.send(message))
        finally:
            await http.close()
    assert isinstance(result, Receipt), result
    # a badly encoded body is not even looked at: a webhook's reply is drained as it comes, never decoded
    reason = None if mode.startswith("bad-") else "reply_unreadable"
    assert (result.via, result.provider_message_id, result.reply_refused) == ("webhook", None, reason)
    assert provider.requests == 1 and held < FREE_WITHIN, held


@pytest.mark.parametrize("mode", UNREADABLE_MODES)
async def test_a_zns_2xx_whose_body_cannot_be_read_is_retried_as_zns_like_an_over_limit_one(mode: str) -> None:
    """Zalo answering 200 with a body that cannot be read: ZNS says in the body whether it took the message, so the
    outcome is unknown, as for an over-limit reply (ADR 0027): a retryable `reply_unreadable`, no SMS fallback,
    the worker free within the read deadline. Before, the retry and the absent fallback were the same, but the
    reason was the error's type and a dripping body held the worker for the whole request timeout."""
    provider, sms = Unreadable(mode), Unreadable("cut")
    async with serve(zns__send=provider.handle, sms=sms.handle) as url:
        [r] = [x for x in rules.for_event(
            dossier(applicant={"zalo_user_id": "z-1", "phone": "0911111111", "preferred_locale": "vi"}),
            directory(), Registry()) if x.channel is ChannelKind.ZALO]
        http = HttpClient(10)
        try:
            message, zns = compose(r, 2), ZaloZns(http, url, SmsGateway(http, url))
            result, held = await timed(lambda: zns.send(message))
        finally:
            await http.close()
    assert isinstance(result, DeliveryError), result
    assert (result.reason, result.retryable, result.not_delivered) == ("reply_unreadable", True, False)
    assert (provider.requests, sms.requests) == (1, 0) and held < FREE_WITHIN, held


@pytest.mark.parametrize(("body", "content_type"), [
    (b"<html><body>Service temporarily unavailable</body></html>", "text/html"),
    (b"null", "application/json"), (b"[]", "application/json"), (b'"ok"', "application/json"),
    (b'{"error": -124, "message": "Invalid us', "application/json"),  # cut off
    (b"{}", "application/json"), (b'{"data": {"msg_id": "zns-1"}}', "application/json"),
    (b'{"error": null}', "application/json"), (b'{"error": "0"}', "application/json"),
    (b'{"error": 0.0}', "application/json"), (b'{"error": false}', "application/json"),
    (b'{"error": "user 0911111111 not found"}', "application/json"),
    (b'{"error": {"phone": "0911111111"}}', "application/json"),
], ids=["html", "null", "array", "string", "cut-off", "empty", "no-error", "error-null", "error-string-0",
        "error-float", "error-false", "error-text", "error-object"])
async def test_a_zns_2xx_that_is_no_object_with_an_integer_error_is_retried_as_zns(body: bytes,
                                                                                  content_type: str) -> None:
    """Zalo answering 200 with a body read whole that does not say whether it took the message (HTML, `null`, an
    array, cut-off JSON, an object without an integer `error`): unknown, so a retryable `reply_unreadable`, no SMS
    fallback, never an echo of the body. Before, it was read as `{}`, `error` as 0: counted sent via Zalo, neither
    retried nor sent by SMS, and the citizen never told."""
    async def zns(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type=content_type)

    sms = Calls()

    async def sms_gateway(request: web.Request) -> web.Response:
        await request.read()
        sms()
        return web.json_response({"message_id": "sms-1"})

    async with serve(zns__send=zns, sms=sms_gateway) as url:
        [r] = [x for x in rules.for_event(
            dossier(applicant={"zalo_user_id": "z-1", "phone": "0911111111", "preferred_locale": "vi"}),
            directory(), Registry()) if x.channel is ChannelKind.ZALO]
        http = HttpClient(5)
        try:
            with pytest.raises(DeliveryError) as failed:
                await ZaloZns(http, url, SmsGateway(http, url)).send(compose(r, 2))
        finally:
            await http.close()
    assert (failed.value.reason, failed.value.retryable, failed.value.not_delivered) == ("reply_unreadable", True,
                                                                                         False)
    assert sms.count == 0


@pytest.mark.parametrize("mode", ["drip", "cut"])
async def test_through_the_dispatcher_an_unreadable_sms_reply_is_one_sent_status_never_a_retry(mode: str) -> None:
    """The dispatcher (3 attempts allowed, 10 ms back-off) with the real SMS channel and a gateway answering 200 and
    a body that drips or is cut off: one request reaches the gateway, one status, `sent` at attempt 1 with reason
    `reply_unreadable`, counted in `notify_provider_replies_refused_total` and logged without content. Before, the
    cut-off body was retried (the gateway got the SMS three times, then a dead letter) and the dripping one was
    not done within the 5 s wait."""
    provider = Unreadable(mode)
    counter = metrics.PROVIDER_REPLIES_REFUSED.labels("sms", "reply_unreadable")
    before = counter._value.get()
    async with serve(sms=provider.handle) as url:
        http = HttpClient(10)
        try:
            with capture_logs() as logs:
                async with running(SmsGateway(http, url), routine=1, max_attempts=3) as s:
                    done, request = Calls(), sms_request()
                    await s.dispatcher.submit(request, done)
                    await settle(lambda: done.count == 1, "done")
                    statuses = [m.json() for m in s.producer.to(OUT.status)]
        finally:
            await http.close()
    assert provider.requests == 1
    assert [(st["outcome"], st["attempt"], st.get("reason")) for st in statuses] == [("sent", 1, "reply_unreadable")]
    assert "provider_message_id" not in statuses[0] and counter._value.get() == before + 1
    [line] = [e for e in logs if e["event"] == "notify.provider_reply_refused"]
    assert (line["nid"], line["via"], line["reason"]) == (request.notification_id, "sms", "reply_unreadable")
    assert "message_id" not in str(line)
