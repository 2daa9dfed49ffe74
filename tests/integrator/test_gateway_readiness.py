"""The gateway's /readyz and /metrics: ready only while the broker answers, metrics off the API port."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from pydantic import ValidationError

from services.common import streak
from services.common.health import Health
from services.gateway import readiness
from services.gateway.app import create_app
from services.gateway.publisher import BrokerUnavailable
from services.gateway.readiness import watch_broker
from services.gateway.settings import GatewaySettings
from services.sources.registry import SourceRegistry
from tests.integrator.test_gateway_app import KEY, Recording, client
from tests.samples import canonical_dossier
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit


class FlakyBroker:
    """Refuses the first `failures` connections, then holds one until `drop()`."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.connected = False
        self.reconnected = asyncio.Event()

    async def connect(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise BrokerUnavailable("KafkaConnectionError")
        self.connected = True
        self.reconnected.set()

    def drop(self) -> None:
        self.connected = False
        self.reconnected.clear()


class RecordingHealth(Health):
    def __init__(self) -> None:
        super().__init__("gateway-test")
        self.seen: list[tuple[bool, str]] = []
        self.became_ready = asyncio.Event()

    def set_ready(self, ready: bool, detail: str) -> None:
        self.seen.append((ready, detail))
        super().set_ready(ready, detail)
        if ready:
            self.became_ready.set()


async def test_watch_says_ready_only_once_the_broker_answered_and_again_after_a_drop() -> None:
    """Not ready while connecting fails, ready once connected, reconnects (staying ready) after a dropped producer."""
    health, stop, broker = RecordingHealth(), asyncio.Event(), FlakyBroker(failures=2)
    watch = asyncio.create_task(watch_broker(broker, health, stop, every_s=0.01))
    await asyncio.wait_for(health.became_ready.wait(), 2)
    assert health.seen == [(False, "broker unavailable (KafkaConnectionError)"), (True, "broker answered")]
    assert broker.attempts == 3
    broker.drop()
    await asyncio.wait_for(broker.reconnected.wait(), 2)
    assert broker.attempts == 4 and health.ready
    stop.set()
    await asyncio.wait_for(watch, 1)



async def test_a_connected_publisher_is_not_ready_while_the_claims_wait_and_says_why() -> None:
    """The publisher's producer outlives an outage (connected until a publish fails): the claims' reason (their
    reader's probe finds the broker silent) makes `/readyz` 503 with that reason, and ready again once it clears."""
    health, stop, broker = RecordingHealth(), asyncio.Event(), FlakyBroker(failures=0)
    why: list[str | None] = ["broker unreachable"]
    watch = asyncio.create_task(watch_broker(broker, health, stop, every_s=0.01, waiting=lambda: why[0]))
    await eventually_async(lambda: health.seen, timeout=2, interval=0.005, what="a readiness report")
    assert health.seen == [(False, "broker unreachable")]
    why[0] = None
    await asyncio.wait_for(health.became_ready.wait(), 2)
    stop.set()
    await asyncio.wait_for(watch, 1)
    assert health.seen == [(False, "broker unreachable"), (True, "broker answered")]

def test_readyz_is_503_until_ready_and_reports_the_reason() -> None:
    """/readyz answers 503 with the health detail while not ready, 200 once ready; /healthz stays 200."""
    health = Health("gateway-test")
    app = create_app(GatewaySettings(), SourceRegistry(), {}, Recording(), health)
    http = TestClient(app)
    not_ready = http.get("/readyz")
    assert not_ready.status_code == 503 and orjson.loads(not_ready.content)["detail"] == "starting"
    health.set_ready(True, "broker answered")
    assert http.get("/readyz").status_code == 200
    assert http.get("/healthz").json() == {"status": "ok", "service": "gateway-test", "alive": True,
                                           "detail": "running"}


async def test_healthz_is_503_while_the_producer_is_refused_for_as_long_as_restarts_would_take(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker watch's connections refused again and again (every second, with no back-off) turn /healthz 503
    once they have failed UNHEALTHY_AFTER_RUNS times over UNHEALTHY_AFTER_S (it stayed 200 for ever), with a short
    reason; /readyz says what it said before; a connection makes /healthz 200 again."""
    monkeypatch.setattr(readiness, "UNHEALTHY_AFTER_S", 0.2)
    health, stop, broker = RecordingHealth(), asyncio.Event(), FlakyBroker(failures=10**9)
    app = create_app(GatewaySettings(), SourceRegistry(), {}, Recording(), health)
    watch = asyncio.create_task(watch_broker(broker, health, stop, every_s=0.01))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        await eventually_async(lambda: not health.alive, timeout=5, interval=0.01, what="unhealthy")
        assert broker.attempts >= streak.UNHEALTHY_AFTER_RUNS
        answer = await http.get("/healthz")
        body = answer.json()
        assert answer.status_code == 503 and body.pop("detail").endswith(
            " tries in a row failed without progress, the last with KafkaConnectionError")
        assert body == {"status": "unhealthy", "service": "gateway-test", "alive": False}
        assert health.unwell("broker watch") is not None
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["detail"] == "broker unavailable (KafkaConnectionError)"
        broker.failures = 0
        await asyncio.wait_for(health.became_ready.wait(), 2)
        assert (await http.get("/healthz")).status_code == 200 and (await http.get("/readyz")).status_code == 200
    stop.set()
    await asyncio.wait_for(watch, 1)


def test_metrics_count_answers_and_published_events() -> None:
    """The gateway's /metrics (the runtime's server) counts its answers and published events (labels: status,
    family); the API itself answers /metrics 404."""
    http = client(Recording())
    before = generate_latest(REGISTRY).decode()
    assert http.post("/v1/events", content=orjson.dumps(canonical_dossier("m-1")), headers=KEY).status_code == 202
    after = generate_latest(REGISTRY).decode()
    assert http.get("/metrics").status_code == 404

    def value(text: str, sample: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(sample + " ")), f"{sample} 0")
        return float(line.split()[-1])

    answered = 'commune_gateway_answers_total{status="202"}'
    published = 'commune_gateway_events_total{family="dossier"}'
    assert value(after, answered) == value(before, answered) + 1
    assert value(after, published) == value(before, published) + 1


def test_the_api_and_the_metrics_have_their_own_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """GATEWAY_HOST/GATEWAY_PORT are the API's; /metrics is on GATEWAY_HTTP_HOST/GATEWAY_HTTP_PORT, 127.0.0.1:9104
    unless set, whatever the API's host."""
    monkeypatch.setenv("GATEWAY_HOST", "0.0.0.0")
    monkeypatch.setenv("GATEWAY_PORT", "8181")
    settings = GatewaySettings()
    assert (settings.host, settings.port, settings.http_host, settings.http_port) == ("0.0.0.0", 8181, "127.0.0.1",
                                                                                      9104)
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9109")
    assert GatewaySettings().http_port == 9109
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "70000")
    with pytest.raises(ValidationError):
        GatewaySettings()
