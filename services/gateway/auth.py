"""Who is calling: an API key (`X-Api-Key`) or an HMAC signature (`X-Source-Id` + `X-Signature`).

An API key is checked from the headers alone, before a byte of the body is read (`identify`); so are a
signature's form, source id and timestamp, but its HMAC only once the body has streamed in (the handler
refuses it before loading the body into memory, and limits failed signatures per peer address). An HMAC
signature covers the whole request (`canonical`): method, path, query, the `X-Commune-Code` and
`Idempotency-Key` headers, the timestamp and the SHA-256 of the body, each exactly as sent, so nothing of a
captured request can be changed or sent for another commune. Its body part is hashed while the body streams
in (`PendingSignature`); a replay of a valid signature is refused by the caller (its nonce, `nonce_key`).

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(hmac_key, canonical)>

Pure functions; comparisons are constant-time; secrets and sent values never appear in messages.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.gateway.keys import Credential

API_KEY = "x-api-key"
SOURCE_ID = "x-source-id"
SIGNATURE = "x-signature"
COMMUNE = "x-commune-code"
IDEMPOTENCY_KEY = "idempotency-key"
VERSION = b"commune-bus-v1"
"""First line of the canonical string: a later scheme gets another, so no v1 signature verifies under it."""
_MAX_TIMESTAMP_DIGITS = 12
"""Unix seconds until the year 33658: a longer `t` is refused before int() (Python limits long conversions)."""
_MAX_SIGNATURE_CHARS = 200


class Unauthenticated(Exception):
    """No valid credential: the message says what is missing, never what was sent."""


@dataclass(frozen=True)
class RequestLine:
    """What a signature covers besides the body, each as the raw bytes the client sent (`b""` when absent)."""

    method: bytes
    path: bytes
    query: bytes
    commune: bytes = b""
    idempotency_key: bytes = b""


def canonical(line: RequestLine, timestamp: int, body_sha256: str) -> bytes:
    """The signed string: eight lines joined by LF, no trailing LF (docs/integrators.md has a worked example)."""
    return b"\n".join([VERSION, line.method.upper(), line.path, line.query, line.commune, line.idempotency_key,
                       str(timestamp).encode(), body_sha256.encode()])


def sign(key: bytes, line: RequestLine, timestamp: int, body: bytes) -> str:
    """The `X-Signature` value a client sends for this request."""
    digest = hmac.new(key, canonical(line, timestamp, hashlib.sha256(body).hexdigest()), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class PendingSignature:
    """A signature whose headers checked out; the body is hashed as it streams, then `verify` decides."""

    source_id: str
    key: bytes = field(repr=False)
    line: RequestLine
    timestamp: int
    given: bytes = field(repr=False)
    body_hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    def update(self, chunk: bytes) -> None:
        self.body_hash.update(chunk)

    def verify(self) -> None:
        """Raises Unauthenticated unless the signature covers this request and the body streamed in."""
        digest = hmac.new(self.key, canonical(self.line, self.timestamp, self.body_hash.hexdigest()), hashlib.sha256)
        if not hmac.compare_digest(digest.hexdigest().encode(), self.given):
            raise Unauthenticated("the signature does not match the request")

    @property
    def nonce(self) -> str:
        """What is remembered for the validity window: the signature itself, under its source."""
        return f"{self.source_id}:{self.given.decode('ascii')}"


@dataclass(frozen=True)
class Identified:
    """The source a request's headers authenticate; `pending` is set when the body still has to verify."""

    source_id: str
    pending: PendingSignature | None = None


def identify(headers: Mapping[str, str], line: RequestLine, credentials: Mapping[str, Credential], now: float,
             tolerance_s: int) -> Identified:
    """Check the credential headers (no body needed); raises Unauthenticated."""
    if (key := headers.get(API_KEY)) is not None:
        found = None
        given = key.encode("latin-1")
        for source_id, cred in credentials.items():  # no early exit: same time whichever entry matches
            if cred.api_key is not None and hmac.compare_digest(cred.api_key.get_secret_value().encode(), given):
                found = source_id
        if not given:  # an empty key is no one's, whatever the secrets hold
            found = None
        if found is None:
            raise Unauthenticated("the API key is not valid")
        return Identified(found)
    if (signature := headers.get(SIGNATURE)) is not None:
        return Identified(*_pending(headers.get(SOURCE_ID, ""), signature, line, credentials, now, tolerance_s))
    raise Unauthenticated(f"send an {API_KEY} header, or {SOURCE_ID} and {SIGNATURE} headers")


def _pending(source_id: str, signature: str, line: RequestLine, credentials: Mapping[str, Credential],
             now: float, tolerance_s: int) -> tuple[str, PendingSignature]:
    cred = credentials.get(source_id)
    if cred is None or cred.hmac_key is None:
        raise Unauthenticated("unknown source id for an HMAC signature")
    parts = dict(p.split("=", 1) for p in signature[:_MAX_SIGNATURE_CHARS].split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not (t.isascii() and t.isdigit() and len(t) <= _MAX_TIMESTAMP_DIGITS) or not (v1.isascii() and v1):
        raise Unauthenticated("signature must be t=<unix seconds, at most 12 digits>,v1=<hex>")
    timestamp = int(t)
    if abs(now - timestamp) > tolerance_s:
        raise Unauthenticated(f"signature timestamp is more than {tolerance_s} s from the gateway's clock")
    key = cred.hmac_key.get_secret_value().encode()
    return source_id, PendingSignature(source_id, key, line, timestamp, v1.lower().encode())
