"""The gateway's run ended by a sibling task's Kafka error, and started again by the runtime: its HTTP server shuts
down with the run and the next run's server serves on the same port (uvicorn, cancelled, left its socket bound and
its lifespan running, and the next run's server could not bind: `sys.exit(3)`, the process gone without a
`service.crashed`)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaError

from schemas.topics import GATEWAY_CLAIMS, TransactionalId, scoped, transactional_id
from services.common import runtime
from services.common.admin import ensure_topics
from services.common.health import Health
from services.common.settings import KafkaConnection
from services.gateway import __main__ as gateway_main
from services.gateway.app import create_app
from services.gateway.claimlog import KafkaClaims
from services.gateway.publisher import KafkaPublisher
from services.gateway.settings import GatewaySettings
from services.sources.registry import SourceRegistry
from tests.kafkatools import free_port
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


async def test_a_run_restarted_after_a_kafka_error_serves_again_on_its_port(
        kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "FIRST_BACKOFF_S", 0.1)
    servers: list[Any] = []

    class Recorded(gateway_main._Server):  # each run's server, to ask it whether it started and stopped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    monkeypatch.setattr(gateway_main, "_Server", Recorded)
    namespace = f"gwr{unique}"
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(GATEWAY_CLAIMS, namespace)])
    settings = GatewaySettings(bootstrap=kafka_bootstrap, namespace=namespace, port=free_port(), instance_id="g1")
    health = Health("gateway")
    publisher = KafkaPublisher(settings, transactional_id(TransactionalId.GATEWAY, namespace, "g1"), 5.0)
    claims = KafkaClaims(settings, scoped(GATEWAY_CLAIMS, namespace), client_id="tests-gateway-restart",
                         timeout_s=5.0)
    app = create_app(settings, SourceRegistry(), {}, publisher, health, claims=claims)
    inner = gateway_main.worker(settings, app, publisher, claims)
    url = f"http://127.0.0.1:{settings.port}"

    async def answers(http: httpx.AsyncClient) -> bool:
        try:
            return (await http.get("/healthz")).status_code in (200, 503)
        except httpx.TransportError:  # not listening (yet)
            return False

    async def fails_once_served() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await eventually_async(lambda: answers(http), timeout=60, interval=0.1, what="the first run serving")
        raise KafkaError("a sibling task's error ends the run")

    async def worker(supervisor: runtime.Supervisor) -> None:
        if not servers:
            supervisor.spawn("fault", fails_once_served())
        await inner(supervisor)

    stop = asyncio.Event()
    running = asyncio.create_task(runtime.supervise("gateway", worker, stop, health))
    try:
        await eventually_async(lambda: (len(servers) == 2 and servers[1].started) or running.done(), timeout=60,
                               interval=0.1, what="the second run's server started")
        assert not running.done(), running  # on the old code: SystemExit(3), the second server's bind refused
        first, second = servers
        assert first.started and all(not s.is_serving() for s in first.servers), "the first run's server shut down"
        assert all(s.is_serving() for s in second.servers)
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            assert await answers(http), "the second run serves on the same port"
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        await publisher.close()
