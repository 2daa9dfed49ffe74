"""What an attempt's status becomes on commune.notify.status: small, whatever a provider answered. Pure.

A status holds ids, codes and times of our own, a recipient ref, and what a provider answered only through a
plain id and a reason code (`channels.replies`), so it is a few hundred bytes. `bounded` keeps it so even
if something else grew: a status over `MAX_BYTES` is written without its provider id and with its reason cut
to `MAX_REASON` characters. A status the topic still refuses for its size is counted and logged by the
dispatcher, never retried: the ledger, not the status, says what was sent.
"""

from __future__ import annotations

from typing import Final

from schemas.notification import NotificationStatus

MAX_BYTES: Final = 4 * 1024
"""A status record's value stays under this: about ten times a usual one (300–600 bytes), a thousandth of the
topic's `max.message.bytes` (the broker's default, 1,048,588)."""
MAX_REASON: Final = 64
"""The longest reason kept in a status cut down to `MAX_BYTES`: our reason codes are shorter."""


def encode(status: NotificationStatus) -> bytes:
    return status.model_dump_json(exclude_none=True).encode()


def bounded(status: NotificationStatus) -> bytes:
    """The record value of `status`: as it is if under `MAX_BYTES`, else without its provider id and with its reason
    cut (every other field is an id, a code or a time of ours, or a recipient ref of at most 128 characters)."""
    value = encode(status)
    if len(value) <= MAX_BYTES:
        return value
    reason = None if status.reason is None else status.reason[:MAX_REASON]
    return encode(status.model_copy(update={"provider_message_id": None, "reason": reason}))
