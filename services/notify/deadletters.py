"""What a notification given up becomes on commune.dlq.notify: the request as a reference, bounded. Pure.

A dead letter is the redacted request (no clear contact, `personal.redact`), with the
webhook body only while the letter stays under `MAX_BYTES`: that body is the canonical event itself
(`rules.structured`, found by the request's `event_source`, `event_id` and `event_type`;
`commune-bus trace <event id>` shows where it is), and nested as a JSON string it is escaped a second time (a 960 kB
event gave a 1.9 MB dead letter, over the topic's limit). Template parameters are kept unless they
make the dead letter larger than `MAX_BYTES` as well. The header `dlq.omitted` names the fields
left out. `least` is the smallest form (ids, rule, channel, recipient ref), for a topic
that refuses even the bounded one.
"""

from __future__ import annotations

from schemas.notification import NotificationRequest, Recipient
from schemas.notify_deadletter import OMITTED
from services.notify.personal import redact

MAX_BYTES = 64 * 1024
"""A dead letter's value stays under this: far below commune.dlq.notify's `max.message.bytes` (the broker's
default, 1,048,588), whatever the event held."""

Letter = tuple[bytes, list[tuple[str, bytes]]]
"""A dead letter's value and the headers saying what it leaves out (none when nothing)."""


def _letter(request: NotificationRequest, omitted: list[str]) -> Letter:
    value = request.model_dump_json(exclude_none=True).encode()
    return value, [(OMITTED, ",".join(omitted).encode())] if omitted else []


def bounded(request: NotificationRequest) -> Letter:
    """The dead letter of `request`: redacted, its webhook body and then its parameters only while it stays small.
    A letter that keeps both can be replayed (`commune-bus notify-dlq replay`, ADR 0033)."""
    kept = redact(request)
    letter = _letter(kept, [])
    if len(letter[0]) <= MAX_BYTES:
        return letter
    omitted = []
    if kept.payload is not None:
        kept, omitted = kept.model_copy(update={"payload": None}), ["payload"]
        letter = _letter(kept, omitted)
        if len(letter[0]) <= MAX_BYTES:
            return letter
    return _letter(kept.model_copy(update={"params": {}}), [*omitted, "params"])


def least(request: NotificationRequest) -> Letter:
    """The smallest dead letter that still names the notification: ids, rule, kind, channel, recipient ref."""
    r = request.recipient
    smallest = request.model_copy(update={"payload": None, "params": {},
                                          "recipient": Recipient(ref=r.ref, locale=r.locale)})
    return _letter(smallest, [*(["payload"] if request.payload is not None else []), "params", "recipient"])
