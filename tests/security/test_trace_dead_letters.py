"""A record intake only dead-lettered is traced by principals that may not read the raw topics (ADR 0038): the
operator's `commune-bus trace` and the gateway's `GET /v1/trace` find it by its dossier code, event id or trace id,
with its reason and field (walkthrough: "nothing found" and 404 while `dlq list` showed it)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from fastapi.testclient import TestClient

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import DLQ_INTAKE, scoped
from services.cli.trace import Timeline, trace_timeline
from services.common import clients
from services.common.acls import SOURCES_FILE
from services.common.admin import partition_counts
from services.common.changelog import read_to_end
from services.common.settings import KafkaConnection
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.gateway.asgi import app
from tests.integrator.conftest import CLI
from tests.kafkatools import free_port, start_service, stop_service
from tests.samples import COMMUNE, canonical_dossier, dossier_code, dumps, portal_dossier
from tests.security.conftest import SecureBroker
from tests.security.probes import readable
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
OPERATOR_KEY = "operator-key-0123456789"
APPLICANT = ("Nguyễn Thị Lan", "008123456789", "0912345678")


async def _records(conn: KafkaConnection, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    out: list[ConsumerRecord[bytes, bytes]] = []
    counts = await partition_counts(conn, [topic])
    await read_to_end(conn, topic, range(counts[topic]), lambda _p, rec: out.append(rec), client_id="dlq-trace-test")
    return out


@pytest.fixture
def intake(secure_broker: SecureBroker, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """intake in the namespace as its own principal; its log."""
    log = tmp_path / "intake.log"
    proc = start_service("services.intake", {
        **secure_broker.conn("intake").environment(), "INTAKE_NAMESPACE": namespace,
        "INTAKE_HTTP_PORT": str(free_port()), "INTAKE_SOURCES_FILE": str(SOURCES_FILE)}, log)
    yield log
    stop_service(proc, timeout=20)


def test_dead_letters_are_traced_without_the_raw_topics(secure_broker: SecureBroker, namespace: str, intake: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A portal dossier with an unknown status and a repeated event, dead-lettered by intake (unknown_status,
    duplicate_event): the operator's trace finds each by its dossier code, the first also by the id and the trace id
    intake gives it, reason and field shown; the gateway's trace too (neither may read the raw topic); the CLI as the
    operator prints it and exits 0. No personal data in any of it."""
    run = uuid.uuid4().hex[:6].upper()
    code, repeated = dossier_code(402), dossier_code(403)  # as the portal writes them; the namespace is this run's
    payload = portal_dossier(code, status=42, ChuHoSo=APPLICANT[0], SoGiayToChuHoSo=APPLICANT[1],
                             SoDienThoaiChuHoSo=APPLICANT[2])
    event = canonical_dossier(f"evt-{run}", dossier_code=repeated)
    raw = bound_topic(Family.DOSSIER, load_registry(SOURCES_FILE).by_id["thuong-lam-one-stop"], namespace).name
    admin = secure_broker.conn("admin")

    async def send() -> None:
        producer = clients.producer(admin, client_id="dlq-trace-test")
        await producer.start()
        try:
            await producer.send_and_wait(raw, dumps(payload), key=COMMUNE.encode(),
                                         headers=[("commune-code", COMMUNE.encode())])
            for _ in range(2):
                await producer.send_and_wait(raw, dumps(event), key=COMMUNE.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    dlq = scoped(DLQ_INTAKE, namespace).name
    logged = intake.read_text

    async def dead_lettered() -> list[DeadLetterContext]:
        letters = [DeadLetterContext.from_headers(r.headers) for r in await _records(admin, dlq)]
        assert sorted(c.reason for c in letters) == sorted([Reason.UNKNOWN_STATUS, Reason.DUPLICATE_EVENT]), (
            logged()[-3000:])
        return letters

    letters = asyncio.run(eventually_async(dead_lettered, timeout=120, interval=0.5, what="both dead letters"))
    unknown = next(c for c in letters if c.reason is Reason.UNKNOWN_STATUS)
    operator = secure_broker.conn("operator")

    def traced(conn: KafkaConnection, query: str) -> Timeline:
        return asyncio.run(trace_timeline(conn, namespace, query))

    by_code = traced(operator, code)
    assert [s.stage for s in by_code.steps] == ["dead letter"], by_code  # it found nothing: steps=[]
    assert unknown.lookup_id and unknown.lookup_trace, unknown  # what it is also traced by
    for found in (by_code, traced(operator, unknown.lookup_id), traced(operator, unknown.lookup_trace)):
        assert [s.stage for s in found.steps] == ["dead letter"], found
        assert found.steps[0].what.startswith(f"unknown_status ({unknown.field}): "), found
        assert f"subject {code}" in found.steps[0].what and found.steps[0].trace == unknown.lookup_trace
    dossier = traced(operator, repeated)
    assert [s.stage for s in dossier.steps] == ["canonical", "dead letter"], dossier
    assert dossier.steps[1].what.startswith("duplicate_event (id): "), dossier
    assert dossier.steps[1].trace == dossier.steps[0].trace  # the trace of the event it repeats

    # the CLI as the operator: found, printed, exit 0 (it said "nothing found for 'TL-…'", exit 1)
    env = {**os.environ, **operator.environment(), "COMMUNE_BUS_NAMESPACE": namespace, "COLUMNS": "400"}
    done = subprocess.run([CLI, "trace", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dead letter" in done.stdout and "unknown_status" in done.stdout and code in done.stdout, done.stdout

    # the gateway, as its own principal (no raw topic either)
    for name, value in secure_broker.conn("gateway").environment().items():
        monkeypatch.setenv(name, value)
    operators = tmp_path / "operators.yaml"
    operators.write_text(f"duty-officer: {OPERATOR_KEY}\n", encoding="utf-8")
    client = TestClient(app(namespace=namespace, operators_file=operators))
    answer = client.get(f"/v1/trace/{code}", headers={"X-Operator-Key": OPERATOR_KEY})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [s["stage"] for s in body["steps"]] == ["dead letter"], body
    assert body["steps"][0]["what"].startswith(f"unknown_status ({unknown.field}): ")
    shown = answer.text + done.stdout + done.stderr + str(found) + str(dossier)
    assert not [p for p in APPLICANT if p in shown]  # never the applicant's name, CCCD or phone
    for principal in ("operator", "gateway"):  # found without the raw record: neither may read it
        assert not asyncio.run(readable(secure_broker.conn(principal), raw)), principal
