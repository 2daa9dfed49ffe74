"""HTTP channels: SMS gateway, Zalo ZNS (falls back to SMS) and signed webhooks, on one aiohttp session.

Every call carries the request's `delivery_key` (its notification id, or the original's for a replay of one that
may have reached the provider, ADR 0033) as `Idempotency-Key` and, when the request has a trace, a W3C
`traceparent` header (the canonical event's trace id, `base.outgoing_traceparent`), so a provider's own
logs can be matched with `commune-bus trace <trace id>`.

A reply is read as a stream, at most `replies.MAX_REPLY_BYTES` of it (a webhook's at most
`replies.DRAIN_BYTES`, then left) within `replies.READ_S` of its status line, and only a plain id and an error
code are kept from it (`replies`).

A 2xx status line is the provider's acceptance, whatever its body: a body that is too long (`reply_too_large`)
or cannot be read (`reply_unreadable`: not in within `replies.READ_S`, cut off, badly encoded) leaves only
what it said unknown. An SMS or a webhook then counts as sent, without an id (a retry could send it twice
through a provider that ignores `Idempotency-Key`, ADR 0012); a ZNS call is retried as ZNS (ZNS says in its
body whether it took the message, ADR 0027). So is a ZNS reply read whole that is no JSON object with an integer
`error` (an HTML page, `null`, an array, cut-off JSON): `reply_unreadable` too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.resolver import DefaultResolver

from schemas.notification import ChannelKind
from services.notify.channels import replies
from services.notify.channels.base import FALLBACK_HELD, DeliveryError, FellBack, Message, Receipt, trace_headers
from services.notify.channels.resolver import AddressRefused, GuardedResolver
from services.notify.subscribers import Registry, signature, without_applicant
from services.notify.templates import zns_params
from services.notify.zns import LOCAL, NO_TEMPLATE, ZnsTemplates

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLY_TOO_LARGE = "reply_too_large"
"""A provider's 2xx reply was longer than `replies.MAX_REPLY_BYTES` and not read (SMS: sent; ZNS: retried)."""
REPLY_UNREADABLE = "reply_unreadable"
"""A provider's 2xx reply body could not be read: not in within `replies.READ_S`, cut off, or badly encoded
(SMS, webhook: sent; ZNS: retried); for ZNS also a body that is no JSON object with an integer `error`."""
ADDRESS_REFUSED = "address_refused"
"""The host name resolved only to cloud metadata, link-local, unspecified or multicast addresses
(`resolver.GuardedResolver`): nothing was sent. Handled like any provider not reached: retried with back-off (its
DNS may be put right), then dead-lettered as `retries_exhausted:address_refused`; a ZNS message falls back to SMS at
once, as when Zalo cannot be reached."""
PROVIDER_ID_REFUSED = "provider_id_refused"
"""The provider answered a message id that is not short and plain (`replies.provider_id`): sent, id not kept."""
UNKNOWN_SUBSCRIBER = "unknown_subscriber"
"""A webhook for a subscriber the registry no longer holds (taken out while its notifications waited, or replayed
after): no call, dead-lettered; not counted under its name (`notify_webhook_calls_total` names the registry's only)."""



class HttpClient:
    """One aiohttp session for every HTTP channel. Host names are looked up with `dns` (aiohttp's default resolver
    if None), whose answers always pass `GuardedResolver`. A request ends within `timeout_s` (NOTIFY_PROVIDER_TIMEOUT_S)
    exactly: aiohttp rounds a timeout of 5 s or more up to the loop clock's next whole second (`ceil_threshold`), so a
    call lasted up to 1 s longer, a ZNS call and its SMS fallback up to 2 s past the drain that counts on them (ADR
    0012)."""

    def __init__(self, timeout_s: float, read_s: float = replies.READ_S, dns: AbstractResolver | None = None) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, ceil_threshold=math.inf)
        self.read_s, self.dns = read_s, dns
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # replies are asked for, and read, as they come: no decompression (a reply in an encoding aiohttp cannot
            # decode, brotli say, raised before the 2xx was seen and the SMS was sent again; nor a zip bomb)
            self._resolver = GuardedResolver(self.dns or DefaultResolver())
            connector = aiohttp.TCPConnector(limit=200, resolver=self._resolver)
            self._session = aiohttp.ClientSession(timeout=self.timeout, connector=connector,
                                                  auto_decompress=False, headers={"Accept-Encoding": "identity"})
        return self._session

    async def post(self, url: str, *, json: object = None, data: bytes | None = None,
                   headers: dict[str, str], read_reply: bool = True) -> dict[str, object] | str:
        """POST; a 2xx reply's JSON object (`{}` if it holds none, or with `read_reply=False`: not wanted), or why
        its body was not taken, `REPLY_TOO_LARGE` or `REPLY_UNREADABLE`: the provider accepted the request, what
        it said beyond that is unknown. A DeliveryError for anything short of a 2xx status line."""
        try:
            # no redirect followed: a signed body (perhaps with personal data) goes to the registered URL only, never
            # where a 307 points (an internal address, say)
            async with self.session.post(url, json=json, data=data, headers=headers, allow_redirects=False) as resp:
                if resp.status == 429 or resp.status >= 500:
                    raise DeliveryError(f"http_{resp.status}")
                if resp.status >= 300:
                    raise DeliveryError(f"http_{resp.status}", retryable=False)
                # accepted: from here on nothing is a failure of the request, only of its reply
                if read_reply and resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
                    resp.close()  # compressed though we asked for it as it is: not read
                    return REPLY_UNREADABLE
                body = await _body(resp, replies.MAX_REPLY_BYTES if read_reply else replies.DRAIN_BYTES, self.read_s)
                if isinstance(body, str):
                    return body
                return replies.decode(body) if read_reply else {}
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:  # no retry can make this URL work
            raise DeliveryError(type(exc).__name__, retryable=False, local=True) from None
        except aiohttp.ClientConnectorError as exc:  # no connection made: the request never left
            reason = ADDRESS_REFUSED if isinstance(exc.os_error, AddressRefused) else type(exc).__name__
            raise DeliveryError(reason, unreached=True) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:  # the connector closes only a resolver it made itself
            await self._resolver.close()


async def _body(resp: aiohttp.ClientResponse, limit: int, read_s: float) -> bytes | str:
    """A 2xx reply's body, read within `read_s`, or why not: `REPLY_TOO_LARGE` (over `limit`) or `REPLY_UNREADABLE`
    (not in within `read_s`, cut off, badly encoded: its connection closed). The request's own timeout still
    applies: running out of it while the body comes is unreadable too, never a failed request."""
    try:
        async with asyncio.timeout(read_s):
            body = await _read_at_most(resp, limit)
    except (aiohttp.ClientError, HttpProcessingError, TimeoutError):
        resp.close()
        return REPLY_UNREADABLE
    return REPLY_TOO_LARGE if body is None else body


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The reply's body if it is at most `limit` bytes; else None, having read no more than `limit` + 1 bytes and
    closed the connection (the rest is never read; a connection with an unread body cannot be reused)."""
    if resp.content_length is not None and resp.content_length > limit:
        resp.close()
        return None
    body = bytearray()
    while chunk := await resp.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            resp.close()
            return None
    return bytes(body)


class SmsGateway:
    """POST {url}/sms {to, text, encoding, segments} with the delivery key as Idempotency-Key."""

    def __init__(self, client: HttpClient, url: str) -> None:
        self.client, self.url = client, url.rstrip("/") + "/sms"

    async def send(self, message: Message) -> Receipt:
        phone = message.request.recipient.phone
        if not phone:
            raise DeliveryError("no_phone", retryable=False, local=True)
        body = {"to": phone, "text": message.sms_text, "encoding": message.sms_count.encoding,
                "segments": message.sms_count.segments}
        headers = {IDEMPOTENCY_HEADER: message.request.delivery_key, **trace_headers(message.request)}
        reply = await self.client.post(self.url, json=body, headers=headers)
        if isinstance(reply, str):  # a 2xx is the gateway's acceptance: a retry could send it again (ADR 0012): sent
            return Receipt(None, via="sms", reply_refused=reply)
        # Gateways that confirm handset delivery synchronously say so; otherwise "sent" (accepted by the gateway).
        mid = replies.provider_id(reply.get("message_id"), (phone,))
        return Receipt(mid.value, delivered=reply.get("status") == "delivered", via="sms",
                       reply_refused=PROVIDER_ID_REFUSED if mid.refused else None)

    async def close(self) -> None: ...


class ZaloZns:
    """Zalo ZNS template message (template id, parameters, tracking id); SMS when ZNS refuses and a phone is known.

    A routine ZNS call falls back to SMS only when known not to have delivered: a definite refusal (an error code, a
    4xx other than 429) or a call that never left (no connection to Zalo). After a timeout, a disconnect, a 5xx, a
    429, a 2xx reply too long to read (`reply_too_large`) or whose body could not be read or does not say
    (`reply_unreadable`: no JSON object with an integer `error`) Zalo may have delivered (or asks us to slow
    down): the failure is retryable and the dispatcher retries it as ZNS, with the same tracking id; an SMS then
    could reach the citizen beside the ZNS message, through a provider that does not know that id. An emergency
    falls back on any failure (ADR 0032, amended): a storm warning twice beats one held for the hours ZNS is down.
    The fallback is called only if the message's `fallback` gate admits it (SMS's circuit, which admits every
    emergency, ADR 0032): else `FALLBACK_HELD`, no call; and only once SMS's rate allows it (the gate takes a token of
    SMS's bucket: a fallback is an SMS the gateway counts against its contract).
    """

    def __init__(self, client: HttpClient, url: str, fallback: SmsGateway, templates: ZnsTemplates = LOCAL) -> None:
        self.client, self.url, self.fallback = client, url.rstrip("/") + "/zns/send", fallback
        self.templates = templates

    async def send(self, message: Message) -> Receipt:
        r = message.request
        try:
            template = self.templates.template_for(r.kind, r.recipient.locale, r.params)
            if template is None:  # none registered for it: by SMS if the phone is known, else a dead letter
                raise DeliveryError(NO_TEMPLATE, retryable=False, local=True)
            body = {"user_id": r.recipient.zalo_user_id, "phone": r.recipient.phone, "template_id": template,
                    "template_data": zns_params(r.kind, r.params), "tracking_id": r.delivery_key}
            reply = await self.client.post(self.url, json=body,
                                           headers={IDEMPOTENCY_HEADER: r.delivery_key, **trace_headers(r)})
            if isinstance(reply, str):  # ZNS says in the body whether it took the message: unknown, retried as ZNS
                raise DeliveryError(reply)
            if type(error := reply.get("error")) is not int:  # a body that does not say (HTML, null, cut off): unknown
                raise DeliveryError(REPLY_UNREADABLE)
            if error != 0:
                # the code only if it is one: a reason is logged and published, and what a provider echoes is not ours
                raise DeliveryError(f"zns_error_{replies.error_code(error)}", retryable=False)
            data = reply.get("data")
            mid = replies.provider_id(data.get("msg_id") if isinstance(data, dict) else None,
                                      (r.recipient.phone, r.recipient.zalo_user_id))
            return Receipt(mid.value, via="zalo", reply_refused=PROVIDER_ID_REFUSED if mid.refused else None)
        except DeliveryError as err:
            if not (err.not_delivered or r.is_emergency) or not r.recipient.phone:
                raise
            # each circuit its own provider's outcome: ZNS's answer if it gave one (no connection, a bad URL: none),
            # a failure if it failed retryably (an emergency's fallback)
            fell_back = FellBack(answered=None if err.unreached or err.local else not err.retryable, to=ChannelKind.SMS)
            # SMS's circuit may hold it (the gateway is not called); else it waits for a token of SMS's rate
            if not await message.fallback.admit(ChannelKind.SMS):
                held = DeliveryError(FALLBACK_HELD, unreached=True, local=True)
                held.fell_back = fell_back
                raise held from None
            try:
                receipt = await self.fallback.send(message)
            except DeliveryError as failed:
                failed.fell_back = fell_back
                raise
            return dataclasses.replace(receipt, fell_back=fell_back)

    async def close(self) -> None: ...


class Webhooks:
    """HMAC-signed POST of the event to the subscriber's URL (secret looked up by subscriber name)."""

    def __init__(self, client: HttpClient, registry: Registry) -> None:
        self.client, self.registry = client, registry

    async def send(self, message: Message) -> Receipt:
        r = message.request
        sub = self.registry.by_name(r.recipient.ref.removeprefix("subscriber:"))
        if sub is None:
            raise DeliveryError(UNKNOWN_SUBSCRIBER, retryable=False, local=True)
        # the registry as it is now decides what the subscriber gets: a webhook made (parked, dead-lettered) while it
        # was entitled to the applicant, sent after it no longer is (or its URL moved to plain http), sent it all the
        # same, opened (privacy audit)
        payload = r.payload if sub.include_personal_data else without_applicant(r.payload or "")
        body = (payload or "").encode()
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/cloudevents+json", "Webhook-Id": r.delivery_key,
                   IDEMPOTENCY_HEADER: r.delivery_key, "Webhook-Timestamp": ts,
                   "Webhook-Signature": signature(sub.secret.get_secret_value(), r.delivery_key, ts, body),
                   **trace_headers(r)}
        # the status code says it all: a body too long is left unread as usual; one that cannot be read is counted
        reply = await self.client.post(sub.url, data=body, headers=headers, read_reply=False)
        return Receipt(None, via="webhook", reply_refused=REPLY_UNREADABLE if reply == REPLY_UNREADABLE else None)

    async def close(self) -> None: ...
