"""HTTP wiring: authenticate, check, publish, answer. Logic lives in auth, batch and publisher."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from schemas import wire
from schemas.events import Family
from schemas.topics import RAW, scoped
from services.common.health import Health
from services.gateway import api, probes
from services.gateway.auth import Unauthenticated, authenticate
from services.gateway.batch import BodyError, check, split_body
from services.gateway.idempotency import IdempotencyStore, fingerprint
from services.gateway.publisher import BrokerUnavailable, Publisher
from services.gateway.settings import Credential, GatewaySettings
from services.gateway.telemetry import ANSWERS, EVENTS
from services.sources.registry import Source, SourceRegistry

log = structlog.get_logger("gateway")
Clock = Callable[[], float]


def create_app(settings: GatewaySettings, registry: SourceRegistry, credentials: dict[str, Credential],
               publisher: Publisher, health: Health | None = None, clock: Clock = time.time) -> FastAPI:
    """The gateway's ASGI app; `health` is what `/readyz` reports (the broker watch of `__main__` sets it)."""
    raw_topic = {f: scoped(RAW[f], settings.namespace).name for f in Family}
    idempotency = IdempotencyStore(settings.idempotency_ttl_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await publisher.close()

    app = FastAPI(title="commune-bus ingest gateway", version="1.0.0", lifespan=lifespan,
                  description="Send commune events over HTTP; they reach the same Kafka topics as direct producers.")

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        return answer(422, api.error("invalid_parameters", f"invalid request parameters: {where}"))

    def answer(status: int, body: dict[str, Any], retry: bool = False) -> JSONResponse:
        headers = {"Retry-After": str(settings.retry_after_s)} if retry else None
        ANSWERS.labels(str(status)).inc()
        return JSONResponse(body, status_code=status, headers=headers)

    def too_large(size: int) -> JSONResponse:
        return answer(413, api.error("too_large", f"body is {size} bytes; the limit is {settings.max_body_bytes}"))

    app.include_router(probes.router(health or Health("gateway")))

    @app.post("/v1/events", status_code=202, summary="Publish one event or a batch",
              responses=api.responses(), response_model=api.AcceptedBody,
              openapi_extra={"requestBody": api.REQUEST_BODY, "security": api.SECURITY})
    async def post_events(
        request: Request,
        family: Annotated[Family | None,
                          Query(description="Family of every record; default: from each record's type")] = None,
        commune: Annotated[str | None,
                           Query(pattern=r"^\d{1,5}$", description="Commune of portal-shape records")] = None,
        x_commune_code: Annotated[str | None, Header(pattern=r"^\d{1,5}$", description="Same as ?commune=")] = None,
        idempotency_key: Annotated[str | None, Header(max_length=200, description="Makes a retry safe")] = None,
    ) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            return too_large(int(declared))
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            return too_large(len(body))
        try:
            source_id = authenticate(request.headers, body, credentials, clock(), settings.signature_tolerance_s)
        except Unauthenticated as exc:
            log.info("gateway.unauthenticated", why=str(exc))
            return answer(401, api.error("unauthenticated", str(exc)))
        caller = registry.by_id.get(source_id)
        if caller is None:
            return answer(403, api.error("unauthorised_source",
                                         "the credential's source id is not in the source registry"))
        if idempotency_key is None:
            status, result, retry = await handle(body, request, family, commune or x_commune_code, caller)
            return answer(status, result, retry)
        scope = (source_id, idempotency_key)
        fp = fingerprint(body, f"{request.url.query}|{x_commune_code or ''}|{request.headers.get('content-type', '')}")
        if (stored := idempotency.lookup(scope)) is not None:
            if stored.fingerprint != fp:
                return answer(422, api.error("idempotency_key_reused",
                                             "this Idempotency-Key was used with another request"))
            ANSWERS.labels(str(stored.status)).inc()
            return JSONResponse(stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"})
        if not idempotency.begin(scope):
            return answer(409, api.error("in_progress", "a request with this Idempotency-Key is in progress"),
                          retry=True)
        try:
            status, result, retry = await handle(body, request, family, commune or x_commune_code, caller)
        except BaseException:
            idempotency.finish(scope, fp, 500, None)
            raise
        idempotency.finish(scope, fp, status, None if retry or status >= 500 else result)
        return answer(status, result, retry)

    async def handle(body: bytes, request: Request, family: Family | None, commune: str | None,
                     caller: Source) -> tuple[int, dict[str, Any], bool]:
        try:
            records = split_body(body, request.headers.get("content-type", "application/json"), settings.max_records)
        except BodyError as exc:
            return 400, api.error("bad_body", str(exc)), False
        checked = check(records, family=family, commune=commune, caller=caller, max_bytes=settings.max_body_bytes)
        if checked.errors:
            kind, status = ("unauthorised_source", 403) if checked.unauthorised else ("invalid_records", 422)
            bad = len({e.index for e in checked.errors})
            log.info("gateway.rejected", source=caller.id, records=len(records), bad=bad, status=status)
            return status, api.error(kind, f"{bad} of {len(records)} records rejected; nothing was published",
                                     checked.errors), False
        try:
            await publisher.publish([(raw_topic[f], wire.encode(e)) for f, e in checked.events])
        except BrokerUnavailable:
            return 503, api.error("broker_unavailable",
                                  "Kafka is unavailable; nothing was published, retry later"), True
        for fam, count in Counter(f for f, _ in checked.events).items():
            EVENTS.labels(fam.value).inc(count)
        log.info("gateway.accepted", source=caller.id, records=len(records))
        accepted = api.AcceptedBody(accepted=len(checked.events), ids=[e.id for _, e in checked.events])
        return 202, accepted.model_dump(), False

    app.openapi().setdefault("components", {})["securitySchemes"] = api.SECURITY_SCHEMES  # generated once, cached
    return app
