"""`/healthz` and `/readyz` on the API port, for the load balancer in front of it.

`/metrics` is not here: the runtime serves it on GATEWAY_HTTP_PORT (127.0.0.1:9104 by default), with the probes
again, as in every service. Integrators reach the API port; the gateway's counts of refusals, failed signatures
and connections tell an attacker how it is seen, and stay with Prometheus.
"""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from services.common.health import Health


class Liveness(BaseModel):
    status: Literal["ok", "unhealthy"]
    service: str
    alive: bool
    detail: str = Field(description="`running`, or which background loop keeps failing without progress (the "
                        "claims reader, the broker watch, the runs), how many times, and the last error's type")


def router(health: Health) -> APIRouter:
    probes = APIRouter()

    @probes.get("/healthz", summary="Liveness", response_model=Liveness,
                responses={503: {"model": Liveness, "description": "Background work keeps failing without progress: "
                                 "restart the process"}})
    async def healthz() -> Response:
        """200 while the event loop answers and no background loop of the gateway (the claims reader, the broker
        watch) keeps failing; 503 with a short reason, no personal data, once one has failed 10 times in a row
        without progress (about 90 s at the least), until it gets somewhere again. Every service's rule."""
        body = {"status": "ok" if health.alive else "unhealthy", **health.liveness()}
        return Response(orjson.dumps(body), status_code=200 if health.alive else 503, media_type="application/json")

    @probes.get("/readyz", summary="Readiness", responses={503: {"description": "The broker has not answered: send "
                                                                  "no traffic here yet"}})
    async def readyz() -> Response:
        """200 once the broker has answered, 503 with the reason while it has not."""
        return Response(orjson.dumps(health.report()), status_code=200 if health.ready else 503,
                        media_type="application/json")

    return probes
