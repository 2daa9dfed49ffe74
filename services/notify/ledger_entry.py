"""One record of the ledger topic: the entry it holds, written within the topic's limit and read back. Pure.

Key = notification id; value = an `Entry`: `done` (with its outcome) or `deferred` (with the redacted request).

Written (`encode`), an entry must fit the topic's `max.message.bytes` (`NOTIFY_LEDGER_BYTES`): one that would not is
refused here (`EntryTooLarge`), before it is applied or sent. A refusal by the broker would cost more than the entry:
aiokafka's idempotent producer counts the refused batch's sequence numbers as used, so every later record to that
partition is refused too (OutOfOrderSequenceNumber; measured on the broker, aiokafka 0.14.0) and the run ends, again
each time the entry comes back.

Read back (`read`), a record that is no entry (no key or no value, a key not UTF-8, a value not JSON or not an entry's
shape, a deferral under another id than its request's, a deferral whose `not_before` or `expires_at` names no offset or
lies outside `replays.TIMES`) raises `Unreadable` with a reason code, never anything else: only notify writes the topic,
and the caller skips and counts it, so one bad record cannot end every restore after it. A naive time is none notify
writes (each is compared with the clock's, aware: a TypeError in a sender task), nor is one of year 1 (its due time
raised out of the restore) or 9999 (the quiet hours' arithmetic overflows): such a time passes the request's schema,
which bounds neither, so it is refused here, where the record is read.
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel

from schemas.notification import NotificationRequest
from schemas.topics import NOTIFY_LEDGER
from services.notify.replays import in_range, with_offsets

RECORD_OVERHEAD = 512
"""What a record takes in its batch beside its key and value, with room to spare: the batch header (61 bytes) and
the record's lengths, offsets and timestamp (at most 30); the ledger writes no headers."""
LIMIT = int(NOTIFY_LEDGER.config["max.message.bytes"])


class Entry(BaseModel, frozen=True):
    state: Literal["done", "deferred"]
    outcome: str | None = None
    request: NotificationRequest | None = None


class EntryTooLarge(Exception):
    """An entry the ledger topic would refuse for its size: neither applied nor sent (its size and the limit only)."""


class Unreadable(ValueError):
    """A ledger record that is no entry; `reason` says why (a fixed code, never the record's content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(nid: str, entry: Entry, limit: int = LIMIT) -> bytes:
    """The record value of `entry`; `EntryTooLarge` if it and its key would pass `limit` (the topic's)."""
    value = entry.model_dump_json(exclude_none=True).encode()
    if len(nid.encode()) + len(value) + RECORD_OVERHEAD > limit:
        raise EntryTooLarge(f"a ledger entry of {len(value)} bytes passes the ledger topic's limit ({limit})")
    return value


def read(key: bytes | None, value: bytes | None) -> tuple[str, Entry | None]:
    """(id, entry) of a record, the entry None for a done one: recognised without building the model (nearly every
    record is one; restores are bounded by this). `Unreadable` for a record that is no entry."""
    if key is None or value is None:
        raise Unreadable("no_key" if key is None else "no_value")
    try:
        nid = key.decode()
        fields = orjson.loads(value)
    except UnicodeDecodeError:
        raise Unreadable("key_not_utf8") from None
    except orjson.JSONDecodeError:
        raise Unreadable("not_json") from None
    if isinstance(fields, dict) and fields.get("state") == "done":
        return nid, None
    try:
        entry = Entry.model_validate(fields)
    except ValueError:  # pydantic's ValidationError
        raise Unreadable("not_an_entry") from None
    if entry.state == "deferred" and entry.request is None:
        raise Unreadable("not_an_entry")
    if entry.request is not None and entry.request.notification_id != nid:  # released under its own id, sent, it
        raise Unreadable("key_mismatch")  # would leave this one due for ever: enqueued and dropped every tick
    if entry.request is not None:
        _check_times(entry.request)
    return nid, entry


def _check_times(request: NotificationRequest) -> None:
    """`Unreadable` if a time of `request` names no offset (`replays.with_offsets`) or lies outside `TIMES`."""
    try:
        with_offsets(request)
    except ValueError:
        raise Unreadable("time_without_offset") from None
    if not in_range(request):  # (`replays.TIMES`)
        raise Unreadable("time_out_of_range")
