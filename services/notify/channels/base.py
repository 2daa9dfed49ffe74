"""The channel interface and what a channel is given: a request and its rendered message."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Protocol

from schemas import trace
from schemas.codes import Locale
from schemas.notification import ChannelKind, NotificationRequest
from services.notify import sms
from services.notify.params import shortened
from services.notify.templates import Rendered, render


class DeliveryError(Exception):
    """A failed attempt. `reason` is a short code (status, error class), never personal data.

    `unreached`: the request never left (no connection to the provider was made), so nothing can have been
    delivered, although trying again later may work.
    `local`: refused here before any call (no phone, an address that is no address): it says nothing of the
    provider (a circuit does not count it, ADR 0032).
    """

    def __init__(self, reason: str, retryable: bool = True, unreached: bool = False, local: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retryable, self.unreached, self.local = reason, retryable, unreached, local
        self.fell_back: FellBack | None = None
        """Set when this is the failure of a fallback (ZNS refused, then SMS failed)."""

    @property
    def not_delivered(self) -> bool:
        """Known not to have reached anyone: a definite refusal, or a request that never left."""
        return not self.retryable or self.unreached


@dataclass(frozen=True)
class FellBack:
    """A send that fell back to another channel (ZNS to SMS): whether the first provider answered (True: a definite
    refusal, it works; False: it failed retryably, which only an emergency falls back on) or None (not reached, or
    refused here before any call: the fallback delivered all the same, so nothing to count against the first
    channel's circuit; review: counted as failures, ZNS down opened Zalo's circuit and parked every Zalo message the
    SMS fallback would have sent), and the channel whose outcome the send's is then (ADR 0032)."""

    answered: bool | None
    to: ChannelKind


@dataclass(frozen=True)
class Receipt:
    provider_message_id: str | None
    """The provider's id for the message, short and plain (`replies.provider_id`), or None."""
    delivered: bool = False
    """True when the provider confirmed delivery to the device/inbox, not just acceptance."""
    via: str = ""
    reply_refused: str | None = None
    """Why the provider's reply (or its id) was not taken although the message was: `provider_id_refused` (an id
    not short and plain, `replies.provider_id`), `reply_too_large` (a 2xx reply not read) or `reply_unreadable` (a
    2xx reply whose body could not be read: too slow, cut off, badly encoded). A code, no value."""
    fell_back: FellBack | None = None
    """Sent by a fallback (ZNS refused, SMS sent)."""


class FallbackGate(Protocol):
    """Awaited by a channel before it falls back to another provider (ZNS to SMS): whether it may call `to`, once
    `to`'s rate allows it. False: the fallback's circuit holds it (ADR 0032, amended): the channel raises
    `FALLBACK_HELD` without the call, and the dispatcher, which gave the gate, parks the request or lets it wait, as it
    would a request of `to`'s own. True once the call took a token of `to`'s rate bucket (`pacing.PacedFallback`)."""

    async def admit(self, to: ChannelKind) -> bool: ...


class AlwaysFallBack:
    """No circuits, no rate (tools, tests of a channel alone): every fallback is called at once."""

    async def admit(self, to: ChannelKind) -> bool:
        return True


ALWAYS_FALL_BACK = AlwaysFallBack()
FALLBACK_HELD = "fallback_held"
"""The reason of the DeliveryError a channel raises when its `FallbackGate` held the fallback: nothing was sent."""


@dataclass(frozen=True)
class Message:
    request: NotificationRequest
    locale: Locale
    subject: str
    text: str
    sms_text: str
    sms_count: sms.SmsCount
    fallback: FallbackGate = ALWAYS_FALL_BACK
    """Whether, and when, a fallback may be called (set by the dispatcher: its circuits and rate buckets)."""


def compose(request: NotificationRequest, segment_limit: int, max_segments: int = sms.MAX_SEGMENTS,
            fallback: FallbackGate = ALWAYS_FALL_BACK) -> Message:
    """Render the template in the recipient's language; fit the SMS text (unaccented Vietnamese over
    `segment_limit` segments, never more than `max_segments`)."""
    if request.payload is not None:
        return Message(request, request.recipient.locale, "", request.payload, "", sms.count(""), fallback)
    r = render(request.kind, request.recipient.locale, request.params)
    short = _sms_render(request, r, segment_limit, max_segments)
    text, counted = sms.fit(short, segment_limit, allow_unaccented=r.locale is Locale.VI, max_segments=max_segments)
    return Message(request, r.locale, r.subject, r.text, text, counted, fallback)


SHORTENED: Final = ("documents", "procedure", "reason", "title", "clusters", "village")
"""The free-text parameters an SMS may shorten to keep the rest whole (never a code, a date or an amount)."""
SHORTEST = 24
"""A shortened parameter keeps at least this many characters."""
MIN_CUT = 4
"""A parameter is shortened by at least this many characters a round."""


def _sms_render(request: NotificationRequest, rendered: Rendered, segment_limit: int, max_segments: int) -> str:
    """The SMS text before `sms.fit`: the rendered text, or, when it would pass `max_segments` (as sent: unaccented
    Vietnamese past `segment_limit`), the text rendered with its longest free-text parameter shortened by what is
    too much, again until it fits or none is left to shorten, each ending "…" ("..." in a GSM-7 text: "…" is no
    GSM-7 character, and made an English SMS UCS-2, a third of its room; review). `sms.fit` cuts the end of a text,
    where the templates put the due date: a Khmer or English SMS requesting six documents ended "New result date:
    07/11/202…" (notify audit). The e-mail keeps the parameters whole."""
    params, text = request.params, rendered.text
    for _ in range(4 * len(SHORTENED)):
        sent = sms.as_sent(text, segment_limit, allow_unaccented=rendered.locale is Locale.VI)
        longest = max((k for k in SHORTENED if len(params.get(k, "")) > SHORTEST), key=lambda k: len(params[k]),
                      default=None)
        if sms.count(sent).segments <= max_segments or longest is None:
            break
        value, mark = params[longest], "..." if sms.is_gsm7(sent) else "…"
        keep = max(SHORTEST, len(value) - max(MIN_CUT, sms.excess(sent, max_segments) + len(mark)))
        params = {**params, longest: shortened(value, keep, mark)}
        text = render(request.kind, rendered.locale, params).text
    return text


def outgoing_traceparent(request: NotificationRequest) -> str | None:
    """The W3C `traceparent` a provider call carries: the event's trace id, a parent id of this notification's own.

    The parent id is derived from the notification id (W3C: a new parent id per outgoing call), so every attempt
    of one notification, retries included, names the same span, as they share the Idempotency-Key; the flags
    are the event's. None when the request has no valid trace (a deadline alert): no header then.
    """
    trace_id = trace.trace_id(request.traceparent)
    if trace_id is None or request.traceparent is None:
        return None
    span = hashlib.sha256(request.notification_id.encode()).hexdigest()[:16]
    return f"00-{trace_id}-{span}-{request.traceparent[-2:]}"


def trace_headers(request: NotificationRequest) -> dict[str, str]:
    """`{"traceparent": ...}` for an HTTP provider call, or nothing when the request has no trace."""
    parent = outgoing_traceparent(request)
    return {} if parent is None else {"traceparent": parent}


class Channel(Protocol):
    async def send(self, message: Message) -> Receipt:
        """Deliver once; the notification id is the provider's idempotency key. Raises DeliveryError."""
        ...

    async def close(self) -> None: ...
