"""The gateway's response bodies, documented in its OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.gateway.batch import RecordError


class AcceptedBody(BaseModel):
    accepted: int = Field(description="How many events Kafka acknowledged")
    ids: list[str] = Field(description="Event ids in request order; the same ids appear on the canonical topics")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable: invalid_records, unauthorised_source, unauthenticated, ...")
    message: str
    errors: list[RecordError] = Field(default_factory=list, description="One entry per problem, by record index")


def error(kind: str, message: str, errors: list[RecordError] | None = None) -> dict[str, Any]:
    return ErrorBody(error=kind, message=message, errors=errors or []).model_dump()


_EVENT = {"type": "object", "description": "A canonical CloudEvents JSON event (see the JSON Schemas in "
          "schemas/jsonschema and the AsyncAPI document) or, for dossiers, the national portal's sync shape"}
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One event, a JSON array of events, or NDJSON (one event per line)",
    "content": {
        "application/json": {"schema": {"oneOf": [_EVENT, {"type": "array", "items": _EVENT, "minItems": 1}]}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON event per line"}},
    },
}


SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"sourceId": [], "signature": []}]
SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "The source system's API key"},
    "sourceId": {"type": "apiKey", "in": "header", "name": "X-Source-Id", "description": "Registry id of the source"},
    "signature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                  "description": "t=<unix seconds>,v1=<hex HMAC-SHA256(hmac_key, '<t>.' + body)>"},
}


def responses() -> dict[int | str, dict[str, Any]]:
    def err(description: str, **extra: Any) -> dict[str, Any]:
        return {"model": ErrorBody, "description": description, **extra}

    retry = {"headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}}
    return {
        202: {"model": AcceptedBody, "description": "Every event is durably on Kafka"},
        400: err("The body is not JSON/NDJSON, is empty, or holds too many records"),
        401: err("No valid API key or signature"),
        403: err("The source may not publish some record (family or commune not in its registry entry)"),
        409: err("A request with the same Idempotency-Key is in progress", **retry),
        413: err("The body is too large"),
        422: err("Some records are invalid (nothing was published), "
                 "or an Idempotency-Key was reused with another body"),
        503: err("Kafka is unavailable; nothing was published", **retry),
    }
