"""`python -m services.metrics` on the real broker: /healthz, /readyz around the group assignment, /metrics text."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

import aiohttp
import pytest
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from schemas.topics import Group, group_id
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.metrics.topics import Names
from tests.kafkatools import free_port, start_service, stop_service
from tests.metrics.golden import event_set
from tests.metrics.test_metrics_kafka import publish
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]
WAIT_S = 60
FIGURES = ("commune_dossiers_open", "commune_dossiers_received", "commune_broadcast_delay_seconds_bucket")


class HoldRevocation(ConsumerRebalanceListener):
    """Once it owns partitions, the member's revocation waits for `release`: the group cannot finish rebalancing."""

    def __init__(self) -> None:
        self.revoking = asyncio.Event()
        self.release = asyncio.Event()

    async def on_partitions_revoked(self, revoked: AbstractSet[TopicPartition]) -> None:
        if revoked:
            self.revoking.set()
            await self.release.wait()

    async def on_partitions_assigned(self, assigned: AbstractSet[TopicPartition]) -> None:
        pass


class Service:
    """The metrics service as a process, and its HTTP endpoints."""

    def __init__(self, bootstrap: str, namespace: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / "metrics.log"
        self.proc = start_service("services.metrics", {
            "KAFKA_BOOTSTRAP": bootstrap, "METRICS_NAMESPACE": namespace, "METRICS_HTTP_PORT": str(self.port),
            "METRICS_STATE_DIR": str(tmp_path / "state")}, self.log)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body); status 0 while nothing answers."""
        assert self.proc.poll() is None, self.log.read_text()[-2000:]
        try:
            async with self.http.get(f"http://127.0.0.1:{self.port}{path}") as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.text()
        except aiohttp.ClientConnectionError:
            return 0, "", ""

    async def json(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"http://127.0.0.1:{self.port}{path}") as resp:
            return resp.status, dict(await resp.json())

    async def close(self) -> int | None:
        await self.http.close()
        stop_service(self.proc)
        return self.proc.returncode


@dataclass(frozen=True)
class Topics:
    conn: KafkaConnection
    namespace: str
    names: Names


@pytest.fixture
async def topics(kafka_bootstrap: str, unique: str) -> Topics:
    """The metrics topics under a namespace of this test's own."""
    made = Topics(KafkaConnection(bootstrap=kafka_bootstrap), f"r{unique}", Names(f"r{unique}"))
    await ensure_topics(made.conn, made.names.specs)
    return made


async def test_readyz_is_503_before_assignment_and_200_once_assigned_and_restored(topics: Topics,
                                                                                  tmp_path: Path) -> None:
    """While the group cannot assign the worker /readyz is 503 (/healthz 200); once it owns partitions, 200."""
    hold = HoldRevocation()
    holder = clients.consumer(topics.conn, client_id="test-holder", group_id=group_id(Group.METRICS, topics.namespace),
                              partition_assignment_strategy=(RangePartitionAssignor,), rebalance_timeout_ms=90_000)
    holder.subscribe(list(topics.names.family_of), listener=hold)
    await holder.start()
    service: Service | None = None
    try:
        await eventually_async(lambda: len(holder.assignment()) == 18, timeout=WAIT_S,
                               what="the holder owning every partition")
        service = Service(topics.conn.bootstrap, topics.namespace, tmp_path)
        await eventually_async(lambda: _status(service, "/healthz", 200), timeout=WAIT_S, what="/healthz")
        await asyncio.wait_for(hold.revoking.wait(), 60)  # the worker joined: the group now waits for the holder
        for _ in range(5):  # the rebalance cannot end before `release`: a state that must hold, sampled over 1 s
            status, body = await service.json("/readyz")
            assert (status, body["ready"]) == (503, False), body
            healthz = await service.json("/healthz")
            assert healthz == (200, {"service": "metrics", "alive": True, "detail": "running"})
            await asyncio.sleep(0.2)  # spreads the samples; nothing is awaited here
        hold.release.set()
        await holder.stop()  # the worker gets every partition, restores them, then says it is ready

        async def ready() -> bool:
            status, body = await service.json("/readyz")
            return status == 200 and body["ready"] is True and body["detail"].startswith("6 partitions")

        await eventually_async(ready, timeout=WAIT_S, what="/readyz 200 with 6 partitions")
        assert "commune_metrics_owned_partitions 6.0" in (await service.get("/metrics"))[2]
    finally:
        hold.release.set()
        await holder.stop()
        if service is not None:
            assert await service.close() == 0, service.log.read_text()[-2000:]  # SIGTERM: a clean stop


async def test_metrics_serves_commune_figures_as_prometheus_text(topics: Topics, tmp_path: Path) -> None:
    """/metrics of the running service is Prometheus text with the commune figures, and promtool accepts it."""
    await publish(topics.conn.bootstrap, topics.namespace, event_set())
    service = Service(topics.conn.bootstrap, topics.namespace, tmp_path)
    try:
        async def figures() -> bool:
            status, _, body = await service.get("/metrics")
            return status == 200 and all(f"{name}{{" in body for name in FIGURES)

        await eventually_async(figures, timeout=WAIT_S, what="commune figures on /metrics")

        async def lag() -> bool:  # its consumer's lag, partition by partition (services/common/lag.py)
            body = (await service.get("/metrics"))[2]
            return any(line.startswith("commune_consumer_lag{") and 'service="metrics"' in line
                       for line in body.splitlines())
        await eventually_async(lag, timeout=WAIT_S, what="the consumer lag on /metrics")
        _, content_type, body = await service.get("/metrics")
        assert content_type.startswith("text/plain; version=") and "commune_service_ready" in body
        if shutil.which("promtool"):
            lint = await asyncio.create_subprocess_exec("promtool", "check", "metrics", stdin=PIPE, stdout=PIPE,
                                                        stderr=PIPE)
            out, err = await asyncio.wait_for(lint.communicate(body.encode()), 60)
            assert lint.returncode == 0 and not out.strip(), (out + err).decode()
    finally:
        assert await service.close() == 0, service.log.read_text()[-2000:]


async def _status(service: Service, path: str, expected: int) -> bool:
    return (await service.get(path))[0] == expected
