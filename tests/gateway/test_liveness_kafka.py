"""The gateway's `/healthz` in a crash loop, on the real secure broker: its claims reader keeps failing (the claims
topic is one its principal may not read) and `/healthz` says so, as every other service's does."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from schemas.topics import GATEWAY_CLAIMS, TransactionalId, scoped, transactional_id
from services.common import runtime, streak
from services.common.admin import ensure_topics
from services.common.health import Health
from services.common.settings import KafkaConnection
from services.gateway import __main__ as gateway_main
from services.gateway import claimlog
from services.gateway.app import create_app
from services.gateway.claimlog import KafkaClaims
from services.gateway.publisher import KafkaPublisher
from services.gateway.settings import GatewaySettings
from services.sources.registry import SourceRegistry
from tests.conftest import ROOT
from tests.kafkatools import free_port
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


def _gateway_principal() -> KafkaConnection:
    """The connection of the broker's `gateway` principal (its ACLs are those of a deployment, namespace "")."""
    if os.environ.get("KAFKA_SASL_USERNAME") != "admin":
        pytest.skip("needs the local secure broker (its gateway principal)")
    path = subprocess.run([str(ROOT / "infra/kafka/kafka.sh"), "env", "gateway"], check=True, capture_output=True,
                          text=True, env={**os.environ, "KAFKA_SECURE": "1"}).stdout.strip()
    return KafkaConnection.from_env_file(Path(path))


async def test_healthz_turns_503_while_the_claims_reader_keeps_failing(
        kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's own run (HTTP server, claims reader, broker watch) under the runtime, as the gateway principal,
    on claims of a namespace it has no rights on: each reader run is refused and retried within the run; after
    UNHEALTHY_AFTER_RUNS of them `/healthz` is 503 with a short reason naming the reader and the error's type (it
    stayed 200, `{"status": "ok"}`, for ever); `/readyz` is 503 as before, with its own reason."""
    monkeypatch.setattr(claimlog, "FIRST_BACKOFF_S", 0.05)
    monkeypatch.setattr(claimlog, "MAX_BACKOFF_S", 0.2)
    namespace = f"gwl{unique}"
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(GATEWAY_CLAIMS, namespace)])
    conn = _gateway_principal()
    settings = GatewaySettings(**{name: getattr(conn, name) for name in KafkaConnection.model_fields},
                               namespace=namespace, port=free_port(), instance_id="g1")
    health = Health("gateway")
    publisher = KafkaPublisher(settings, transactional_id(TransactionalId.GATEWAY, namespace, "g1"), 5.0)
    claims = KafkaClaims(settings, scoped(GATEWAY_CLAIMS, namespace), client_id="tests-gateway-liveness",
                         timeout_s=5.0)
    app = create_app(settings, SourceRegistry(), {}, publisher, health, claims=claims)
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.supervise("gateway", gateway_main.worker(settings, app, publisher, claims),
                                                    stop, health))
    url = f"http://127.0.0.1:{settings.port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            async def unhealthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 503
                except httpx.TransportError:  # the server is starting
                    return False

            await eventually_async(unhealthy, timeout=60, interval=0.2, what="/healthz 503")
            body = (await http.get("/healthz")).json()
            assert body["status"] == "unhealthy" and body["alive"] is False and body["service"] == "gateway"
            counted, _, last = body["detail"].partition(", the last with ")
            assert counted == f"claims reader: {streak.UNHEALTHY_AFTER_RUNS} tries in a row failed without progress"
            assert last == "TopicsNotCreated", "the refusal's type only (ensure_topics': not authorised to describe)"
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            assert not running.done(), "the run goes on: the reader keeps trying"
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await publisher.close()

