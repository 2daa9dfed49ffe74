"""What a provider answers, against real local servers (no Kafka): ids kept only when short and plain, reply
bodies read only up to a bound, webhook replies not read at all, whatever the server sends."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from schemas.notification import ChannelKind
from services.notify import rules
from services.notify.channels.base import DeliveryError, Receipt, compose
from services.notify.channels.http import HttpClient, SmsGateway, Webhooks, ZaloZns
from services.notify.subscribers import Registry
from tests.kafkatools import free_port
from tests.notify.events import directory, dossier

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
