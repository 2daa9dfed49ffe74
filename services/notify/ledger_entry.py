"""One record of the ledger topic: the entry it holds, written within the topic's limit. Pure.

Key = notification id; value = an `Entry`: `done` (with its outcome) or `deferred` (with the redacted request).

Written (`encode`), an entry must fit the topic's `max.message.bytes` (`NOTIFY_LEDGER_BYTES`): one that would not is
refused here (`EntryTooLarge`), before it is applied or sent. A refusal by the broker would cost more than the entry:
aiokafka's idempotent producer counts the refused batch's sequence numbers as used, so every later record to that
partition is refused too (OutOfOrderSequenceNumber; measured on the broker, aiokafka 0.14.0) and the run ends, again
each time the entry comes back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from schemas.notification import NotificationRequest
from schemas.topics import NOTIFY_LEDGER

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


def encode(nid: str, entry: Entry, limit: int = LIMIT) -> bytes:
    """The record value of `entry`; `EntryTooLarge` if it and its key would pass `limit` (the topic's)."""
    value = entry.model_dump_json(exclude_none=True).encode()
    if len(nid.encode()) + len(value) + RECORD_OVERHEAD > limit:
        raise EntryTooLarge(f"a ledger entry of {len(value)} bytes passes the ledger topic's limit ({limit})")
    return value
