"""On SIGTERM the gateway's server gives requests under way `GATEWAY_STOP_REQUESTS_S`, then cancels them: its stop is
bounded, so its compose grace period can be (infra/compose.yaml, `__main__.stop_budget_s`)."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from services.gateway.__main__ import _Server, server_config
from services.gateway.app import create_app
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, CREDENTIALS, REGISTRY, Clock
from tests.kafkatools import free_port
from tests.samples import canonical_dossier
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit  # loopback only: needs no broker
STOP_S = 1


class Hanging:
    """A publisher whose broker never answers (and whose requests are never cancelled by a Kafka timeout)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def publish(self, records: object, until: float = float("inf")) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def close(self) -> None:
        return None


async def test_a_request_still_under_way_after_stop_requests_s_is_cancelled_and_the_server_ends() -> None:
    """The server stops within GATEWAY_STOP_REQUESTS_S of being told to though a request never ends by itself (it
    waited for it for ever); the request is cancelled, its client answered 500 (it publishes nothing: safe to send
    again)."""
    settings = GatewaySettings(port=free_port(), stop_requests_s=STOP_S)
    publisher = Hanging()
    app = create_app(settings, REGISTRY, CREDENTIALS, publisher, claims=MemoryClaims(Clock()))
    server = _Server(server_config(settings, app))
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as http:
        await eventually_async(lambda: server.started, timeout=10, what="the server started")
        request = asyncio.create_task(http.post("/v1/events", content=orjson.dumps(canonical_dossier()),
                                                headers={"X-Api-Key": API_KEY, "Content-Type": "application/json"}))
        await asyncio.wait_for(publisher.started.wait(), 5)
        told = time.monotonic()
        server.should_exit = True
        await asyncio.wait_for(serving, STOP_S + 5)
        took = time.monotonic() - told
        answer = await request
    assert answer.status_code == 500, "uvicorn's answer to a request its app did not answer"
    assert STOP_S <= took < STOP_S + 2
    assert publisher.cancelled
