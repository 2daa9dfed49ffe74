"""The gateway's OpenAPI document: committed, served, and honoured (schemathesis against the running gateway)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.batch import JSON_SEQ, NDJSON_TYPES, READABLE, media_type_problem
from services.gateway.openapi import COMMITTED, document
from tests.integrator.conftest import API_KEY, Stack

schema = schemathesis.openapi.from_path(COMMITTED)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@schemathesis.serializer(*NDJSON_TYPES, JSON_SEQ)
def _lines(ctx: object, value: object) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@pytest.mark.unit
def test_committed_openapi_is_what_the_app_serves() -> None:
    """docs/openapi.json equals the app's generated document (`python -m services.gateway.openapi` rewrites it)."""
    assert COMMITTED.read_text(encoding="utf-8") == document()


@pytest.mark.unit
def test_the_request_body_names_every_media_type_the_gateway_reads() -> None:
    """POST /v1/events documents each media type `batch.READABLE` names and no other, each one the gateway reads
    (the document listed 2 of the 7: application/json and application/x-ndjson)."""
    content = json.loads(COMMITTED.read_text(encoding="utf-8"))["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert sorted(content) == sorted(READABLE)
    assert [m for m in content if media_type_problem({"content-type": m}) is not None] == []


@pytest.mark.kafka
def test_running_gateway_serves_the_committed_document(stack: Stack) -> None:
    """GET /openapi.json on the live gateway returns the committed contract."""
    with urllib.request.urlopen(stack.url + "/openapi.json", timeout=5) as r:
        served = json.load(r)
    assert served == json.loads(COMMITTED.read_text(encoding="utf-8"))


@pytest.mark.kafka
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_gateway_honours_its_openapi(case: schemathesis.Case, stack: Stack) -> None:
    """schemathesis: generated requests (authenticated) never get a 5xx other than documented, and every answer
    matches the documented status codes, content types, headers and schemas."""
    case.call_and_validate(base_url=stack.url, headers={"X-Api-Key": API_KEY}, checks=CHECKS)
