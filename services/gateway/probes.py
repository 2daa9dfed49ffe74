"""`/healthz`, `/readyz` and `/metrics` on the gateway's own server (the API port: it has only one)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.common.health import Health


def router(health: Health) -> APIRouter:
    probes = APIRouter()

    @probes.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @probes.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """200 once the broker has answered, 503 with the reason while it has not."""
        return Response(orjson.dumps(health.report()), status_code=200 if health.ready else 503,
                        media_type="application/json")

    @probes.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return probes
