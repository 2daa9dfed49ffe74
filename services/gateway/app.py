"""HTTP wiring: the routes and their documentation. The request's steps are `services.gateway.handler`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from schemas.events import Family
from schemas.topics import RAW, scoped
from services.common.health import Health
from services.gateway import api, operators, probes
from services.gateway.bugs import AnswerBugs
from services.gateway.claims import Claims
from services.gateway.framing import RefuseDoubleFraming
from services.gateway.handler import Gateway
from services.gateway.keys import Credential, operator_keys, refuse_shared_keys, source_keys
from services.gateway.memory_claims import MemoryClaims
from services.gateway.operators import load_operators
from services.gateway.publisher import Publisher
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.unread import CloseUnreadBodies
from services.sources.registry import SourceRegistry

Clock = Callable[[], float]


def create_app(settings: GatewaySettings, registry: SourceRegistry, credentials: dict[str, Credential],
               publisher: Publisher, health: Health | None = None, clock: Clock = time.time,
               claims: Claims | None = None, ticks: Clock | None = None) -> FastAPI:
    """The gateway's ASGI app; `health` is what `/readyz` reports (the broker watch of `__main__` sets it).

    `clock` is wall time (signatures, claims); `ticks` measures rates, `time.monotonic` unless a test gives a
    `clock` of its own, which then drives both.

    Raises `keys.KeysFileError` for an operators file the gateway does not start with, or a key held by a
    source and an operator.

    `claims` hold Idempotency-Keys and nonces: `__main__` gives the Kafka ones (shared, durable); without them
    they live in this process only (tests, the OpenAPI export).
    """
    operators_keys = load_operators(settings.operators_file)
    # one key for a source and an operator: whoever holds it is both (each file alone is checked as it is read)
    refuse_shared_keys(f"{settings.secrets_file or 'GATEWAY_SECRETS_FILE'} and {settings.operators_file}: ",
                       source_keys(credentials), operator_keys(operators_keys))
    claims = claims or MemoryClaims(clock, settings.idempotency_answer_bytes)
    raw_topics = {f: scoped(RAW[f], settings.namespace).name for f in Family}
    gateway = Gateway(settings, registry, credentials, publisher, claims,
                      RateLimiter(settings.rate_per_s, settings.rate_burst), raw_topics, clock,
                      ticks or (time.monotonic if clock is time.time else clock))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await publisher.close()

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN, which a commune's network may not reach and
    # which no browser of an operator should run for us; the contract is /openapi.json (docs/openapi.json)
    app = FastAPI(title="commune-bus ingest gateway", version="1.1.0", lifespan=lifespan, description=api.DESCRIPTION,
                  docs_url=None, redoc_url=None, redirect_slashes=False)  # `slash_redirect` instead

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own answers (404 no such path, 405 method not allowed) in the gateway's error shape, not
        FastAPI's `{"detail": ...}`; their headers (a 405's `Allow`) kept. A path that is a route's but for its
        trailing slash is redirected there (`slash_redirect`)."""
        if exc.status_code == 404 and (moved := slash_redirect(app, request)) is not None:
            return moved
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # not through `gateway.answer`: its counter is of answers to POST /v1/events
        return JSONResponse(api.error(kind, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        body = api.error("invalid_parameters", f"invalid request parameters: {where}")
        if request.scope["path"] == "/v1/events":  # `gateway.answer` counts answers to POST /v1/events only
            return gateway.answer(422, body)
        return JSONResponse(body, status_code=422)

    app.add_middleware(CloseUnreadBodies)
    app.add_middleware(RefuseDoubleFraming)  # before any route or body is read: the request is framed twice
    app.add_middleware(AnswerBugs)  # outermost of the gateway's own: it sees what any route or middleware raises
    app.include_router(probes.router(health or Health("gateway")))
    app.include_router(operators.router(settings.connection(), settings.namespace,
                                        operators_keys,
                                        trace_concurrency=settings.trace_concurrency,
                                        trace_timeout_s=settings.trace_timeout_s))

    @app.post("/v1/events", status_code=202, summary="Publish one event or a batch",
              responses=api.responses(), response_model=api.AcceptedBody,
              openapi_extra={"requestBody": api.REQUEST_BODY, "security": api.SECURITY})
    async def post_events(
        request: Request,
        family: Annotated[Family | None,
                          Query(description="Family of every record; default: from each record's type")] = None,
        commune: Annotated[str | None,
                           Query(pattern=r"^[0-9]{1,5}$", description="Commune of portal-shape records")] = None,
        x_commune_code: Annotated[str | None, Header(pattern=r"^[0-9]{1,5}$", description="Same as ?commune=")] = None,
        idempotency_key: Annotated[str | None, Header(max_length=200, description="Makes a retry safe: the same "
                                                      "key and request get the first answer, on every instance, "
                                                      "for GATEWAY_IDEMPOTENCY_TTL_S")] = None,
    ) -> JSONResponse:
        if commune is not None and x_commune_code is not None and commune.zfill(5) != x_commune_code.zfill(5):
            return gateway.answer(422, api.error("invalid_parameters", "?commune= and the X-Commune-Code header name "
                                                 "two communes: send one of them"))
        return await gateway.post(request, family, commune or x_commune_code, idempotency_key)

    app.openapi().setdefault("components", {})["securitySchemes"] = api.SECURITY_SCHEMES  # generated once, cached
    return app


def slash_redirect(app: FastAPI, request: Request) -> Response | None:
    """A 307 to the route this path names but for a trailing slash (`/v1/events/` -> `/v1/events`, method and body
    kept), or None. Its `Location` is the path and query alone, as RFC 9110 allows: Starlette's own redirect wrote an
    absolute URL from the request's `Host` header, whatever a client put there (`Host: attacker.example` came back
    as the place to send the events to, for any cache or proxy in between to keep)."""
    path = request.scope["path"]
    if path == "/":
        return None
    moved = {**request.scope, "path": path.rstrip("/") if path.endswith("/") else f"{path}/"}
    if not any(route.matches(moved)[0] is not Match.NONE for route in app.router.routes):
        return None
    query = request.scope.get("query_string", b"").decode("latin-1")
    return RedirectResponse(moved["path"] + (f"?{query}" if query else ""), status_code=307)
