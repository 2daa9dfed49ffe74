"""The services themselves on the secure broker, each with its own principal: a registered source publishes on its
bound raw topic, intake (as `intake`) validates and publishes what is its own and dead-letters what claims another
source, metrics (as `metrics`) counts it. The topics and ACLs of a namespace of the test's own are created by
`admin`, as `make up` does for the production names."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, PARTITIONS, scoped
from services.common import clients
from services.common.acls import SOURCES_FILE
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from services.privacy.deadletters import is_sealed
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.cluster.tools import metric_sum, scrape
from tests.integrator.conftest import CLI
from tests.kafkatools import free_port, start_service, stop_service
from tests.samples import COMMUNE, canonical_dossier, dumps
from tests.security.conftest import SecureBroker
from tests.security.probes import GUARD_S
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


async def _read(conn: KafkaConnection, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Committed records of `topic`, read to its end by `conn`."""
    reader = clients.consumer(conn, topic, client_id="security-e2e")
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(GUARD_S):
            await reader.start()
            while not reader.assignment():
                await reader.getmany(timeout_ms=100)
            end = await reader.end_offsets(list(reader.assignment()))
            while [tp for tp, offset in end.items() if await reader.position(tp) < offset]:
                for records in (await reader.getmany(timeout_ms=200)).values():
                    out.extend(records)
    finally:
        await reader.stop()
    return out


@pytest.fixture
def services(secure_broker: SecureBroker, namespace: str, tmp_path: Path) -> Iterator[dict[str, int]]:
    """intake and metrics as subprocesses, each with its principal's KAFKA_* settings only; their HTTP ports."""
    ports = {"intake": free_port(), "metrics": free_port()}
    procs: list[subprocess.Popen[bytes]] = []
    for name, extra in (("intake", {"INTAKE_SOURCES_FILE": str(SOURCES_FILE)}),
                        ("metrics", {"METRICS_STATE_DIR": str(tmp_path / "metrics")})):
        prefix = name.upper()
        env = {**secure_broker.conn(name).environment(), f"{prefix}_NAMESPACE": namespace,
               f"{prefix}_HTTP_PORT": str(ports[name]), **extra}
        procs.append(start_service(f"services.{name}", env, tmp_path / f"{name}.log"))
    yield ports
    for proc in procs:
        stop_service(proc, timeout=20)


async def test_a_source_intake_and_metrics_work_with_their_own_principals(
        secure_broker: SecureBroker, namespace: str, services: dict[str, int], tmp_path: Path) -> None:
    """The source's own dossier reaches the canonical topic and metrics; one claiming Lạng Sơn's source from the same
    principal is dead-lettered as unauthorised_source. Two more of its own, one without a key and one keyed but on
    another partition than its commune's (kcat's default partitioner is not Kafka's), are moved to the commune's
    partition by intake, as its own principal, and published (audit: intake could not write the raw topics it moves
    them on, crashed, and crashed again on the same record at every restart)."""
    entry = load_registry(SOURCES_FILE).by_id["thuong-lam-one-stop"]
    raw = bound_topic(Family.DOSSIER, entry, namespace).name
    own = canonical_dossier("sec-own")
    spoofed = {**canonical_dossier("sec-spoofed"), "source": "/provinces/20/dossiers"}
    elsewhere = (partition_for(COMMUNE.encode(), PARTITIONS) + 1) % PARTITIONS
    producer = clients.producer(secure_broker.conn("source-thuong-lam-one-stop"), client_id="security-e2e")
    await producer.start()
    try:
        for record in (own, spoofed):
            await producer.send_and_wait(raw, dumps(record), key=COMMUNE.encode())
        await producer.send_and_wait(raw, dumps(canonical_dossier("sec-unkeyed")), partition=elsewhere)
        await producer.send_and_wait(raw, dumps(canonical_dossier("sec-misplaced")), key=COMMUNE.encode(),
                                     partition=elsewhere)
    finally:
        await producer.stop()
    admin = secure_broker.conn("admin")
    canonical = scoped(CANONICAL[Family.DOSSIER], namespace).name

    async def published() -> bool:
        events = await _read(admin, canonical)
        assert sorted(dict(r.headers)["ce_id"] for r in events) == [b"sec-misplaced", b"sec-own", b"sec-unkeyed"], (
            tmp_path / "intake.log").read_text()[-3000:]
        return True

    await eventually_async(published, timeout=120, interval=0.5, what="intake published the canonical event")

    async def counted() -> float:
        seen = metric_sum(await asyncio.to_thread(scrape, services["metrics"]), "commune_metrics_events_total")
        assert seen >= 1, (tmp_path / "metrics.log").read_text()[-3000:]
        return seen

    await eventually_async(counted, timeout=120, interval=0.5, what="metrics counted the canonical event")
    dead = await _read(admin, scoped(DLQ_INTAKE, namespace).name)
    assert [DeadLetterContext.from_headers(r.headers).reason for r in dead] == [Reason.UNAUTHORISED_SOURCE]
    assert is_sealed(dead[0].headers)  # sealed: listing it needs the key store
    # the operator lists it with its own principal: the key store it opens sealed dead letters with reads both key
    # topics (before: refused the dead letters' day keys, TopicAuthorizationFailedError)
    listed = await asyncio.to_thread(subprocess.run, [CLI, "dlq", "list", "--json"], capture_output=True, text=True,
                                     timeout=120, env={**os.environ, **secure_broker.conn("operator").environment(),
                                                       "COMMUNE_BUS_NAMESPACE": namespace})
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [orjson.loads(line)["reason"] for line in listed.stdout.splitlines()] == ["unauthorised_source"]
    # and traces the event with it (the raw topics are not its to read: left out, and named when it sees them)
    traced = await asyncio.to_thread(subprocess.run, [CLI, "trace", "sec-own"], capture_output=True, text=True,
                                     timeout=120, env={**os.environ, **secure_broker.conn("operator").environment(),
                                                       "COMMUNE_BUS_NAMESPACE": namespace, "COLUMNS": "300"})
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert "canonical" in traced.stdout and "sec-own" in traced.stdout
    logs = (tmp_path / "intake.log").read_text() + (tmp_path / "metrics.log").read_text()
    for principal in ("intake", "metrics"):
        password = secure_broker.conn(principal).sasl_password
        assert password is not None and password.get_secret_value() not in logs
