"""Who is calling: an API key (`X-Api-Key`) or an HMAC signature (`X-Source-Id` + `X-Signature`).

Signature: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(hmac_key, "<t>." + body)>`; the
timestamp must be within the tolerance so a captured request cannot be replayed later.
Pure functions; comparisons are constant-time; secrets never appear in results.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from services.gateway.settings import Credential

API_KEY = "x-api-key"
SOURCE_ID = "x-source-id"
SIGNATURE = "x-signature"
_MAX_TIMESTAMP_DIGITS = 12
"""Unix seconds until the year 33658: a longer `t` is refused before int() (Python limits long conversions)."""


class Unauthenticated(Exception):
    """No valid credential: the message says what is missing, never what was sent."""


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def authenticate(headers: Mapping[str, str], body: bytes, credentials: Mapping[str, Credential], now: float,
                 tolerance_s: int) -> str:
    """The source id the request authenticates as; raises Unauthenticated."""
    if (key := headers.get(API_KEY)) is not None:
        found = None
        for source_id, cred in credentials.items():  # no early exit: same time whichever entry matches
            if cred.api_key is not None and hmac.compare_digest(cred.api_key.get_secret_value().encode(), key.encode()):
                found = source_id
        if found is None:
            raise Unauthenticated("the API key is not valid")
        return found
    if (signature := headers.get(SIGNATURE)) is not None:
        return _verify_signature(headers.get(SOURCE_ID, ""), signature, body, credentials, now, tolerance_s)
    raise Unauthenticated(f"send an {API_KEY} header, or {SOURCE_ID} and {SIGNATURE} headers")


def _verify_signature(source_id: str, signature: str, body: bytes, credentials: Mapping[str, Credential],
                      now: float, tolerance_s: int) -> str:
    cred = credentials.get(source_id)
    parts = dict(p.split("=", 1) for p in signature.split(",") if "=" in p)
    if cred is None or cred.hmac_key is None:
        raise Unauthenticated("unknown source id for an HMAC signature")
    t = parts.get("t", "")
    if not (t.isascii() and t.isdigit() and len(t) <= _MAX_TIMESTAMP_DIGITS) or "v1" not in parts:
        raise Unauthenticated("signature must be t=<unix seconds, at most 12 digits>,v1=<hex>")
    timestamp = int(parts["t"])
    if abs(now - timestamp) > tolerance_s:
        raise Unauthenticated(f"signature timestamp is more than {tolerance_s} s from the gateway's clock")
    expected = sign(cred.hmac_key.get_secret_value().encode(), timestamp, body)
    if not hmac.compare_digest(expected.encode(), f"t={timestamp},v1={parts['v1']}".encode()):
        raise Unauthenticated("the signature does not match the body")
    return source_id
