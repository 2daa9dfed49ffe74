"""Operators' endpoints: where did a record go (`GET /v1/trace/{query}`), erase an applicant (`POST /v1/erasures`).

Operators authenticate with `X-Operator-Key`, one key per operator in `GATEWAY_OPERATORS_FILE` (YAML: operator id ->
key, kept out of git like the sources' secrets); without that file both endpoints answer 401. A source's credentials
never open them. The trace shows metadata only (topics, offsets, types, reasons, outcomes); an erasure destroys the
applicant's data keys and writes an audit record naming the operator and the pseudonymous subject, never the CCCD
(ADR 0015). The gateway's principal reads what a trace reads and writes the key and audit topics, for these.

A trace reads whole topics (from `?since=` on, if given) in a thread of its own: at most
`GATEWAY_TRACE_CONCURRENCY` run at once (one more is 503 `busy` at once), each stopped after
`GATEWAY_TRACE_TIMEOUT_S` (504). A missing or wrong key is logged with the peer address (never the key) and
counted (`commune_gateway_operator_keys_refused_total`).
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
import structlog
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Header, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from starlette.requests import ClientDisconnect

from services.cli.trace import SINCE_HELP, since_ms, trace_timeline
from services.common.settings import KafkaConnection
from services.common.sparse import Sparse
from services.gateway import keys as key_files
from services.gateway.api import ErrorBody, error
from services.gateway.keys import (
    KEY_RULE,
    MIN_KEY_CHARS,
    PLACEHOLDER_RULE,
    KeysFileError,
    is_placeholder,
    keys_file,
)
from services.gateway.telemetry import OPERATOR_KEYS_REFUSED, TRACES
from services.privacy import crypto
from services.privacy.crypto import PrivacyError
from services.privacy.erase import erase_applicant
from services.privacy.settings import PrivacySettings, pepper_of

log = structlog.get_logger("gateway")
T = TypeVar("T")
Endpoint = Literal["trace", "erasures"]

CCCD = r"^([0-9]{12}|[0-9]{9})$"
r"""ASCII digits: a regex `\d` takes any Unicode digit (٠١٢…), which would hash to a subject no one has."""
OperatorKey = Annotated[str | None, Header(alias="X-Operator-Key", max_length=200,
                                           description="An operator's key (GATEWAY_OPERATORS_FILE)")]
QUERY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
Query = Annotated[str, PathParam(description="Dossier code, event id or trace id: 1 to 128 letters, digits, '.', "
                                 "'_', ':' or '-' (checked once the operator key is: 422 invalid_parameters)")]
Since = Annotated[str | None, QueryParam(description=f"Read from this time on: {SINCE_HELP} (checked once the "
                                         "operator key is: 422 invalid_parameters)")]


class Step(BaseModel):
    at_ms: int
    stage: str = Field(description="raw, dead letter, canonical, notification, notification dead letter")
    where: str = Field(description="topic/partition/offset")
    what: str
    trace: str = Field(description="W3C trace id, where the record carries one")


class TraceBody(BaseModel):
    query: str
    steps: list[Step]
    truncated: bool = Field(default=False, description="More steps were found than the 1,000 listed")
    unreadable: list[str] = Field(default_factory=list, description="Topics this gateway's principal may not read, "
                                  "left out (the raw topics, which hold personal data in clear)")


class ErasureRequest(BaseModel):
    """Every identifier the citizen used: a dossier sent without a CCCD is sealed under its phone, e-mail or Zalo
    id, which an erasure by the CCCD alone does not reach (`privacy.erase.erase_applicant`); one whose dossier named
    none of them under a subject of its own (`subject`, as a dossier's trace shows it). At least one."""

    model_config = ConfigDict(extra="forbid")
    cccd: str | None = Field(default=None, pattern=CCCD, description="The applicant's 12-digit citizen identity number")
    phone: str | None = Field(default=None, min_length=8, max_length=32, pattern=r"^[0-9+() .-]+$",
                              description="A phone number their dossiers carried (8 digits at least)")
    email: str | None = Field(default=None, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$",
                              description="An e-mail address their dossiers carried")
    zalo: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[^\x00-\x20\x7f]+$",
                             description="A Zalo user id their dossiers carried")
    subject: str | None = Field(default=None, pattern=f"^(?:{crypto.APPLICANT_SUBJECT.pattern})$",
                                description="A pseudonymous subject (a-..., d-... or r-...) as the trace of a "
                                "dossier shows it: an applicant whose dossier named no CCCD, phone, e-mail or Zalo id "
                                "is sealed under their dossier's subject (d-...; a random r-... per event before "
                                "2026-12-03), which only this reaches")

    @model_validator(mode="after")
    def _some(self) -> ErasureRequest:
        if not self.identifiers():
            raise ValueError("no identifier")
        if not all(crypto.identifies(kind, value) for kind, value in self.identifiers()):
            raise ValueError("not an identifier of one person")  # "-----" as a phone would shred every placeholder
        return self

    def identifiers(self) -> list[tuple[str, str]]:
        return [(kind, v) for kind in ("cccd", "phone", "email", "zalo", "subject") if (v := getattr(self, kind))]


class Erased(BaseModel):
    identifier: str = Field(description="Which identifier of the request: cccd, phone, email, zalo or subject")
    erasure_id: str
    subject: str = Field(description="Pseudonymous subject id (HMAC of the identifier): the audit record's key")
    keys_destroyed: int


class ErasureBody(BaseModel):
    erasure_id: str = Field(description="The first erasure's (the CCCD's when given)")
    subject: str = Field(description="The first erasure's pseudonymous subject id")
    keys_destroyed: int = Field(description="Keys destroyed, all identifiers together")
    erasures: list[Erased] = Field(description="One erasure per identifier given, each with its audit record")


MAX_OPERATOR_ID_CHARS = 64
OPERATOR_ID = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_OPERATOR_ID_CHARS}}}")
"""An operator id names the operator in an erasure's audit record (`operator:<id>`, 128 characters at most)."""


def load_operators(path: Path | None) -> dict[str, SecretStr]:
    """Operator id -> key (empty without a file: the endpoints answer 401). Raises KeysFileError for an id that
    could not name an audit's requester, or a key that is missing, not a string or shorter than `MIN_KEY_CHARS`
    (`alice:` with no key was the key "None", and `bob: ''` let an empty X-Operator-Key in), or one held twice."""
    if path is None:
        return {}
    keys = {}
    for number, (operator, key) in enumerate(keys_file(path).items(), start=1):
        if not OPERATOR_ID.fullmatch(str(operator)):
            raise KeysFileError(f"{path}: entry {number}: an operator id is 1 to {MAX_OPERATOR_ID_CHARS} "
                                "characters, without spaces or control characters")
        if not isinstance(key, str) or len(key) < MIN_KEY_CHARS:
            raise KeysFileError(f"{path}: operator {operator}: {KEY_RULE}")
        if is_placeholder(key):
            raise KeysFileError(f"{path}: operator {operator}: {PLACEHOLDER_RULE}")
        keys[str(operator)] = SecretStr(key)
    key_files.refuse_shared_keys(f"{path}: ", key_files.operator_keys(keys))
    return keys


def operator_of(keys: dict[str, SecretStr], given: str | None) -> str | None:
    """The operator whose key `given` is (compared in constant time against every key), else None. An empty key
    is no one's, whatever the file holds."""
    found = None
    for operator, key in keys.items():
        if given and hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
            found = operator
    return found


REFUSALS_LOGGED = Sparse()
"""At most one `operator.refused` line per endpoint and kind every `sparse.EVERY_S` (the refusals between counted in
it): a refusal costs its sender nothing, and must not flood the log."""


def _refused(request: Request, endpoint: Endpoint, given: str | None) -> JSONResponse:
    """401, counted, and logged sparingly (`REFUSALS_LOGGED`): which endpoint, whether a key was sent, the peer
    address, how many were refused since the last line; never the key."""
    key = "wrong" if given else "missing"
    OPERATOR_KEYS_REFUSED.labels(endpoint, key).inc()
    if (refused := REFUSALS_LOGGED.due((endpoint, key))) is not None:
        log.warning("operator.refused", endpoint=endpoint, key=key, peer=request.client.host if request.client else "",
                    refused_since_last=refused)
    return _error(401, "unauthenticated", "an operator key is required (X-Operator-Key)")


class TraceOverdue(Exception):
    """A trace ran past its deadline (`GATEWAY_TRACE_TIMEOUT_S`) and was stopped."""


async def within(seconds: float, work: Awaitable[T]) -> T:
    """`work`, cancelled once `seconds` have passed (TraceOverdue); a TimeoutError of its own (a broker that did not
    answer) stays one."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await work
    except TimeoutError:
        if deadline.expired():
            raise TraceOverdue from None
        raise


def _error(status: int, kind: str, message: str, retry: bool = False) -> JSONResponse:
    """An answer in the gateway's one error shape (`api.ErrorBody`)."""
    return JSONResponse(error(kind, message), status_code=status, headers={"Retry-After": "5"} if retry else None)


def router(conn: KafkaConnection, namespace: str, operators: dict[str, SecretStr], *, trace_concurrency: int,
           trace_timeout_s: float) -> APIRouter:
    """The operators' routes. At most `trace_concurrency` traces run at once (one more is answered 503 `busy` at
    once, never queued), each stopped after `trace_timeout_s` (504)."""
    api = APIRouter(tags=["operators"])
    tracing = 0

    @api.get("/v1/trace/{query}", summary="Where did a record go (operators)", response_model=TraceBody,
             responses={401: {"model": ErrorBody, "description": "No or wrong operator key"},
                        404: {"model": ErrorBody, "description": "Nothing found"},
                        422: {"model": ErrorBody, "description": "Not a query (checked after the key)"},
                        503: {"model": ErrorBody, "description": "The topics could not be read "
                              "(`broker_unavailable`), or as many traces as the gateway runs at once are running "
                              "(`busy`, GATEWAY_TRACE_CONCURRENCY): retry after Retry-After"},
                        504: {"model": ErrorBody, "description": "Not done within GATEWAY_TRACE_TIMEOUT_S "
                              "(`trace_timeout`): stopped, nothing listed; narrow it with `since`, or use "
                              "`commune-bus trace`, which has no such limit"}})
    async def trace(request: Request, query: Query, x_operator_key: OperatorKey = None, since: Since = None) -> Any:
        nonlocal tracing
        if operator_of(operators, x_operator_key) is None:
            return _refused(request, "trace", x_operator_key)
        if not QUERY.fullmatch(query):
            return _error(422, "invalid_parameters", "the query is 1 to 128 letters, digits, '.', '_', ':' or '-'")
        try:
            start = None if since is None else since_ms(since)
        except ValueError as exc:  # the message names the forms, never echoes the text
            return _error(422, "invalid_parameters", str(exc))
        if tracing >= trace_concurrency:  # each reads whole topics: refused at once rather than queued
            TRACES.labels("busy").inc()
            return _error(503, "busy", f"{trace_concurrency} traces are running, as many as this gateway runs at "
                          "once; try again", retry=True)
        tracing += 1
        try:  # in a worker thread on a loop of its own: reading whole topics never stalls this loop's requests; the
            # slot is held until that thread ends (a trace past its deadline is cancelled there and closes its reader)
            found = await anyio.to_thread.run_sync(
                lambda: asyncio.run(within(trace_timeout_s, trace_timeline(conn, namespace, query, start))))
        except TraceOverdue:
            TRACES.labels("overdue").inc()
            log.warning("operator.trace_overdue", timeout_s=trace_timeout_s)
            return _error(504, "trace_timeout", f"the trace was not done within {trace_timeout_s:g} s and was "
                          "stopped; nothing is listed (narrow it with ?since=30d, or use commune-bus trace, which "
                          "has no such limit)")
        except (KafkaError, OSError, TimeoutError) as exc:  # the broker did not answer: retryable, not a 500
            TRACES.labels("broker_unavailable").inc()
            return _error(503, "broker_unavailable", f"the topics could not be read ({type(exc).__name__}); try again",
                          retry=True)
        finally:
            tracing -= 1
        if not found.steps:
            TRACES.labels("not_found").inc()
            return _error(404, "not_found", "no record has this event id, dossier code or trace id")
        TRACES.labels("found").inc()
        return TraceBody(query=query, steps=[Step(**vars(s)) for s in found.steps], truncated=found.truncated,
                         unreadable=list(found.unreadable))

    @api.post("/v1/erasures", status_code=202, summary="Erase an applicant: destroy their data keys (operators)",
              response_model=ErasureBody,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": ErasureRequest.model_json_schema()}}}},
              responses={401: {"model": ErrorBody, "description": "No or wrong operator key"},
                         413: {"model": ErrorBody, "description": "Body over 1 KiB"},
                         422: {"model": ErrorBody, "description": "Not a JSON object with a 12-digit cccd and/or a "
                               "phone, email, zalo or subject identifier"},
                         503: {"model": ErrorBody, "description": "Not confirmed, or no PRIVACY_PEPPER: retry"}})
    async def erase(request: Request, x_operator_key: OperatorKey = None) -> Any:
        operator = operator_of(operators, x_operator_key)  # the key first: a stranger's body is never read
        if operator is None:
            return _refused(request, "erasures", x_operator_key)
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > 1024:
                    return _error(413, "too_large", "an erasure request is a few identifiers")
        except ClientDisconnect:  # gone, or cut by the server for sending too slowly: nobody reads this answer
            return _error(400, "bad_body", "the client went away before the body ended")
        try:
            wanted = ErasureRequest.model_validate_json(body)
        except ValidationError:
            return _error(422, "invalid_request", "send {\"cccd\": \"<12 digits>\"} and/or the phone, email or zalo "
                          "id the citizen used, or the subject a dossier's trace shows")
        try:
            pepper = pepper_of(PrivacySettings())
        except PrivacyError:
            return _error(503, "not_configured", "this gateway has no PRIVACY_PEPPER")
        try:
            audits = await erase_applicant(conn, namespace, pepper, wanted.identifiers(),
                                           requested_by=f"operator:{operator}", via="gateway")
        except (KafkaError, OSError, TimeoutError) as exc:  # refused or unanswered (perhaps committed): sent again
            return _error(503, "broker_unavailable",
                          f"the erasure was not confirmed ({type(exc).__name__}); send it again", retry=True)
        except ValueError as exc:  # refused before any key was destroyed (a placeholder's subject); names no value
            return _error(422, "invalid_request", str(exc))
        erased = [Erased(identifier=kind, erasure_id=a.erasure_id, subject=a.subject, keys_destroyed=a.keys_destroyed)
                  for kind, a in audits]
        return ErasureBody(erasure_id=erased[0].erasure_id, subject=erased[0].subject,
                           keys_destroyed=sum(e.keys_destroyed for e in erased), erasures=erased)

    return api
