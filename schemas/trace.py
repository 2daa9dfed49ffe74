"""Trace context: the CloudEvents distributed-tracing extension (`traceparent`, W3C Trace Context).

One trace id follows a record from the gateway (which takes the caller's W3C
`traceparent` header, or starts one) through intake (the raw record's
`ce_traceparent` header or `traceparent` attribute) to the canonical event, notify
and every log line about it. A record that arrives without one gets a trace
derived from its source and id, so reprocessing the same record gives the same
trace (and the same canonical bytes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

PATTERN: Final = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
SHAPE: Final = re.compile(PATTERN)
"""A traceparent of version 00 as W3C Trace Context writes it (its ids may still be all zeros: `has_zero_id`)."""
_VALID = SHAPE
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def is_valid(traceparent: str) -> bool:
    """Version 00, lower-case hex, and neither the trace id nor the parent id all zeros (W3C: invalid)."""
    return bool(_VALID.fullmatch(traceparent)) and not has_zero_id(traceparent)


def has_zero_id(traceparent: str) -> bool:
    """Whether a traceparent of `PATTERN`'s shape has an all-zero trace id or parent id, which W3C Trace Context
    declares invalid: a receiver treats it as absent (`schemas.envelope.Event` derives one in its place)."""
    return traceparent[3:35] == _ZERO_TRACE or traceparent[36:52] == _ZERO_SPAN


def derive(source: str, event_id: str) -> str:
    """A sampled traceparent determined by the event's source and id (the same record, the same trace)."""
    digest = hashlib.sha256(f"{source}\x00{event_id}".encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


def trace_id(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a valid traceparent, for logs and lookups."""
    return traceparent[3:35] if traceparent and is_valid(traceparent) else None


def start(random_bytes: bytes) -> str:
    """A new sampled traceparent from 24 random bytes (the gateway starts one for a caller that sent none)."""
    if len(random_bytes) != 24:
        raise ValueError("24 random bytes: 16 for the trace id, 8 for the span id")
    trace, span = random_bytes[:16].hex(), random_bytes[16:].hex()
    return f"00-{trace}-{span}-01"


HEADERS: Final = ("traceparent", "ce_traceparent")
"""Record headers a sender's trace may come in, the first present taken: `traceparent` as an HTTP client names it,
`ce_traceparent` as CloudEvents' Kafka binding does."""


def sent_in(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """The valid traceparent of a record's `HEADERS` (of a repeated header the last), for a record whose body has
    none (a portal payload, a structured event without the attribute); None without one, or if it is not valid
    (absent, as W3C Trace Context has a receiver treat it)."""
    found: dict[str, bytes | None] = {}
    for name, value in headers:
        if name in HEADERS:
            found[name] = value
    for name in HEADERS:
        if name in found:
            value = found[name]
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else ""
            return text if is_valid(text) else None
    return None
