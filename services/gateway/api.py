"""The gateway's response bodies, documented in its OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.gateway.batch import JSON_TYPES, NDJSON_TYPES, READABLE, RecordError


class AcceptedBody(BaseModel):
    accepted: int = Field(description="How many events Kafka acknowledged")
    ids: list[str] = Field(description="Event ids in request order; the same ids appear on the canonical topics")
    trace_ids: list[str] = Field(
        default_factory=list, description="W3C trace id of each event, in request order: the caller's `traceparent` "
        "header when it sent one, else derived from the event's source and id; it follows the event through "
        "intake and notify (ce_traceparent) and `commune-bus trace <trace id>` finds every step")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable: invalid_records, unauthorised_source, unauthenticated, ...")
    message: str
    errors: list[RecordError] = Field(default_factory=list, description="One entry per problem, by record index")


def error(kind: str, message: str, errors: list[RecordError] | None = None) -> dict[str, Any]:
    return ErrorBody(error=kind, message=message, errors=errors or []).model_dump()


_EVENT = {"type": "object", "description": "A canonical CloudEvents JSON event (see the JSON Schemas in "
          "schemas/jsonschema and the AsyncAPI document) or, for dossiers, the national portal's sync shape"}
_JSON = {"schema": {"oneOf": [_EVENT, {"type": "array", "items": _EVENT, "minItems": 1}]}}
_LINES = {"schema": {"type": "string", "description": "One JSON event per line"}}
_SEQUENCE = {"schema": {"type": "string", "description": "RFC 7464: each JSON event after a record separator (0x1E)"}}
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One event, a JSON array of events, NDJSON (one event per line) or a JSON text sequence. Any "
                   "other `application/*+json` is read as JSON; a request without Content-Type is JSON",
    "content": {media: _JSON if media in JSON_TYPES else _LINES if media in NDJSON_TYPES else _SEQUENCE
                for media in READABLE},
}
"""Every media type the gateway reads (`batch.READABLE`, from which it is built): the document listed two of the
seven (application/json, application/x-ndjson), so a client generated from it could not send the others."""


DESCRIPTION = """Send commune events over HTTP; they reach the same Kafka topics as direct producers.

**Credentials** (checked from the headers before the body is read; a signature's HMAC once the body has
arrived): `X-Api-Key`, or `X-Source-Id` with
`X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(hmac_key, canonical)>` where `canonical` is eight lines
joined by `\\n` (no trailing newline), each exactly as sent:

    commune-bus-v1
    <METHOD>
    <path>
    <query string without '?', or empty>
    <X-Commune-Code header, or empty>
    <Idempotency-Key header, or empty>
    <t>
    <hex SHA-256 of the body>

`t` must be within 300 s of the gateway's clock, and each signature is accepted once (a replay is 401):
sign every request, retries included, afresh.

**Limits**: a body over 10 MiB is refused with 413 as it streams (chunked bodies included); one record is
at most intake's limit (1 MiB: 422 `payload_too_large`); each source has a request rate (429 with
`Retry-After`) and a number of Idempotency-Keys it may hold at once (100,000 by default; past it a new key is
429 `idempotency_keys_exhausted`, retries of held keys and requests without a key go on).

**Idempotency-Key**: the same key and request get the first answer (`Idempotent-Replayed: true`) on every
gateway instance, for 24 h; the key with another request is 422; 409 while the first is in progress. Each
instance keeps whole answers up to a byte budget (the oldest dropped first): a replay it no longer keeps is
rebuilt from the retried request, and when that gives another answer (another `traceparent`, changed rules)
the first status and counts come back with `ids`, `trace_ids` and `errors` empty and `Idempotent-Lists:
omitted`. Nothing is published twice either way.
"""

SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"sourceId": [], "signature": []}]
SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "The source system's API key"},
    "sourceId": {"type": "apiKey", "in": "header", "name": "X-Source-Id", "description": "Registry id of the source"},
    "signature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                  "description": "t=<unix seconds>,v1=<hex HMAC-SHA256(hmac_key, canonical request)> (see the API's "
                  "description)"},
}


def responses() -> dict[int | str, dict[str, Any]]:
    def err(description: str, **extra: Any) -> dict[str, Any]:
        return {"model": ErrorBody, "description": description, **extra}

    retry = {"headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}}
    return {
        202: {"model": AcceptedBody, "description": "Every event is durably on Kafka", "headers": {
            "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                    "description": "This is the first answer to this Idempotency-Key, again"},
            "Idempotent-Lists": {"schema": {"type": "string", "enum": ["omitted"]},
                                 "description": "A replay's lists (ids, trace_ids, errors) are not repeated"}}},
        400: err("The body is not JSON/NDJSON, is empty, or holds too many records; or the Idempotency-Key "
                 "header is empty (`empty_idempotency_key`); or the request has both Content-Length and "
                 "Transfer-Encoding (`bad_framing`: the body unread, the connection closed)"),
        401: err("No valid API key or signature, or a signature used before"),
        403: err("The source may not publish some record (family or commune not in its registry entry)"),
        409: err("A request with the same Idempotency-Key is in progress", **retry),
        413: err("The body passed the limit (it is not read further; the connection is closed)"),
        415: err("The Content-Type is not JSON, NDJSON or JSON text sequences in UTF-8, or the body has a "
                 "Content-Encoding (the body is not read)",
                 headers={"Accept-Post": {"schema": {"type": "string"}, "description": "The media types accepted"}}),
        422: err("Some records are invalid (nothing was published), "
                 "or an Idempotency-Key was reused with another body"),
        429: err("This source is over its request rate, or holds as many Idempotency-Keys as it may "
                 "(`idempotency_keys_exhausted`: retry later, or without a key), or (signed requests) this address "
                 "sent too many failed signatures (a replayed signature counts as one), or has more bytes of signed "
                 "bodies being read at once, unverified, than its failed signatures left stand for; or this source "
                 "has as many request bodies being read or waiting for their check as it may (the rest of the body "
                 "unread, the connection closed: send a large body with `Expect: 100-continue`)", **retry),
        500: err("The gateway met a bug (`internal_error`; logged for its operators, the connection closed): "
                 "retry later, with the same Idempotency-Key if the request had one"),
        503: err("Kafka is unavailable; nothing was published (`broker_unavailable`); or (`busy`) the gateway is "
                 "reading as many signed bodies, their signatures not yet checked, or holds as many request bodies "
                 "in all, as it may, or has no room on its disk for this one: the rest of the body is not read and "
                 "the connection is closed", **retry),
    }
