"""A restarted gateway fences its predecessor: the stable instance id names the transactional id (real broker)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from schemas import wire
from schemas.topics import RAW_DOSSIER, TransactionalId, scoped, transactional_id
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.gateway.publisher import Fenced, KafkaPublisher, LeaseLapsed, Records
from services.gateway.settings import GatewaySettings
from tests import naming
from tests.gateway.conftest import API_KEY, Site
from tests.kafkatools import read_all
from tests.samples import canonical_dossier
from tests.waiting import eventually

pytestmark = pytest.mark.kafka


def record(event_id: str) -> wire.KafkaRecord:
    return wire.KafkaRecord(b"02269", b"{}", [("ce_id", event_id.encode())])


def test_the_transactional_id_is_named_by_the_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """GATEWAY_INSTANCE_ID (stable across restarts) names the transactional id; the default is the host name."""
    monkeypatch.setenv("GATEWAY_INSTANCE_ID", "gw-a")
    settings = GatewaySettings()
    assert transactional_id(TransactionalId.GATEWAY, "ns", settings.instance_id) == "ns.commune-bus.gateway.gw-a"
    monkeypatch.delenv("GATEWAY_INSTANCE_ID")
    import socket

    assert GatewaySettings().instance_id == socket.gethostname()


class Stalling(KafkaPublisher):
    """A gateway that stalls (a long pause, a hung host) with its transaction open, until `resume` is set."""

    def __init__(self, conn: KafkaConnection, tid: str) -> None:
        super().__init__(conn, tid, 10.0)
        self.open, self.resume = asyncio.Event(), asyncio.Event()

    async def _publish(self, records: Records, until: float = float("inf")) -> None:
        producer = await self._ready()
        async with producer.transaction():
            for topic, rec in records:
                await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
            self.open.set()
            await self.resume.wait()


async def test_a_second_producer_with_the_id_fences_the_first(kafka_bootstrap: str) -> None:
    """The predecessor's open transaction is aborted and fails as fenced, its next publish too (it does not
    fence back); only what committed before and what the successor publishes is readable."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    namespace = "fence" + naming.unique(8)
    topic = scoped(RAW_DOSSIER, namespace).name
    await ensure_topics(conn, [scoped(RAW_DOSSIER, namespace)])
    tid = transactional_id(TransactionalId.GATEWAY, namespace, "g1")
    old, new = Stalling(conn, tid), KafkaPublisher(conn, tid, 10.0)
    try:
        old.resume.set()
        await old.publish([(topic, record("before"))])
        old.resume.clear()
        stalled = asyncio.create_task(old.publish([(topic, record("open"))]))
        await asyncio.wait_for(old.open.wait(), 10)
        await new.connect()  # the restarted instance, same id
        old.resume.set()
        with pytest.raises(Fenced):
            await stalled
        with pytest.raises(Fenced):
            await old.publish([(topic, record("after"))])
        assert old.fenced and not old.connected
        await new.publish([(topic, record("successor"))])
    finally:
        await old.close()
        await new.close()
    ids = [next(v.decode() for k, v in r.headers if k == "ce_id") for r in await read_all(kafka_bootstrap, topic,
                                                                                          expect=2, idle=1.0)]
    assert ids == ["before", "successor"]


def test_a_gateway_process_fenced_by_its_successor_stops(site: Site) -> None:
    """A second producer with the running gateway's instance id: the gateway's next request is 503 (nothing
    published), it never fences back, and the process exits 1 saying it was fenced."""
    gateway = site.start("g9")
    body = orjson.dumps(canonical_dossier("fenced-" + uuid.uuid4().hex[:8]))
    headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
    assert httpx.post(gateway.url + "/v1/events", content=body, headers=headers, timeout=30).status_code == 202
    conn = KafkaConnection(bootstrap=site.bootstrap)
    successor = KafkaPublisher(conn, transactional_id(TransactionalId.GATEWAY, site.namespace, "g9"), 10.0)

    async def take_over_and_publish() -> None:
        try:
            await successor.connect()
            answer = await asyncio.to_thread(httpx.post, gateway.url + "/v1/events", content=body, headers=headers,
                                             timeout=30)
            assert answer.status_code == 503, answer.text
            await successor.publish([(f"{site.namespace}.commune.raw.dossier", record("successor"))])
        finally:
            await successor.close()

    asyncio.run(take_over_and_publish())
    assert eventually(lambda: gateway.proc.poll() is not None, timeout=30, what="the fenced gateway exits")
    assert gateway.proc.returncode == 1 and "gateway.fenced" in gateway.log.read_text()


async def test_records_acknowledged_after_their_lease_are_not_committed(kafka_bootstrap: str) -> None:
    """A request whose Idempotency-Key lease ended before its records were acknowledged (its gateway paused between
    its claim and its transaction: a retry elsewhere may hold the key) is aborted, LeaseLapsed, nothing readable; the
    producer is kept, and a request within its lease commits."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    namespace = "lease" + naming.unique(8)
    topic = scoped(RAW_DOSSIER, namespace).name
    await ensure_topics(conn, [scoped(RAW_DOSSIER, namespace)])
    now = 1_000_000.0
    publisher = KafkaPublisher(conn, transactional_id(TransactionalId.GATEWAY, namespace, "g1"), 10.0,
                               clock=lambda: now)
    try:
        with pytest.raises(LeaseLapsed):
            await publisher.publish([(topic, record("lapsed"))], until=now)
        assert publisher.connected
        await publisher.publish([(topic, record("held"))], until=now + 1)
    finally:
        await publisher.close()
    ids = [next(v.decode() for k, v in r.headers if k == "ce_id") for r in await read_all(kafka_bootstrap, topic,
                                                                                          expect=1, idle=1.0)]
    assert ids == ["held"]
