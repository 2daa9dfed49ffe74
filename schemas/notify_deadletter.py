"""Notify's dead letters on commune.dlq.notify: the headers written beside the request given up, and their schema.

Intake's dead letters (`schemas.deadletter`) seal a rejected raw record whole and say why in `dlq.*` headers;
notify's are another thing: the notification request as JSON (redacted, `services.notify.deadletters`) with the
headers below. The AsyncAPI document described both with intake's message (`dlq.source.topic` required, a reason of
intake's list, an octet-stream value), which no letter of notify's matched (contract audit, 2026-12).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

REASON: Final = "dlq.reason"
ATTEMPTS: Final = "dlq.attempts"
REJECTED_AT: Final = "dlq.rejected.at"
OMITTED: Final = "dlq.omitted"
OMITTABLE: Final = ("payload", "params", "recipient")
"""What a letter may leave out to stay small, named in `OMITTED` (comma-separated)."""
REASON_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,200}$"
"""A reason is a code, never a provider's text: `http_401`, `no_phone`, `zns_error_-124`, `ClientConnectorError`,
`retries_exhausted:http_503`, `deferral_too_large`, `unopenable`."""
_OUTSIDE = re.compile(r"[^A-Za-z0-9_.:-]")


def reason_code(reason: str) -> str:
    """`reason` as `REASON_PATTERN` allows it: any other character `_`, at most 200 of them (the codes notify gives
    are all within it; this holds the header to its documented form whatever a channel raises)."""
    return _OUTSIDE.sub("_", reason)[:200] or "unknown"


def headers(reason: str, attempts: int, rejected_at: datetime) -> list[tuple[str, bytes]]:
    """The headers of a notify dead letter, besides `OMITTED` (which the bounded letter adds when it leaves out)."""
    return [(REASON, reason_code(reason).encode()), (ATTEMPTS, str(attempts).encode()),
            (REJECTED_AT, rejected_at.isoformat().encode())]


def header_schema() -> dict[str, Any]:
    """The JSON Schema of those headers, as the AsyncAPI document gives them."""
    omittable = "|".join(OMITTABLE)
    return {"type": "object", "required": [REASON, ATTEMPTS, REJECTED_AT], "properties": {
        REASON: {"type": "string", "pattern": REASON_PATTERN,
                 "description": "Why it was given up, a code: the provider's answer (`http_401`, `zns_error_<code>`), "
                                "a refusal here (`no_phone`, `invalid_email`, `unknown_subscriber`), "
                                "`retries_exhausted:<reason>` after its retries, `deferral_too_large`, `unopenable`, "
                                "`internal_error`"},
        ATTEMPTS: {"type": "string", "pattern": r"^[0-9]+$",
                   "description": "Attempts made (0: a deferred request given up without one)"},
        REJECTED_AT: {"type": "string", "format": "date-time", "description": "When notify gave it up (RFC 3339)"},
        OMITTED: {"type": "string", "pattern": f"^({omittable})(,({omittable}))*$",
                  "description": "What the letter leaves out to stay small; a letter without recipient or params "
                                 "(or a webhook's payload) cannot be sent again"},
    }}
