"""The operators' endpoints on the real broker: a trace of a record and an erasure, each behind an operator key that
no source credential opens."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from schemas.personal import ErasureAudit
from schemas.topics import PRIVACY_AUDIT, RAW_DOSSIER, TOPICS, scoped
from services.common.admin import ensure_topics
from services.common.closing import CLOSE_TIMEOUT_S
from services.common.settings import KafkaConnection
from services.privacy import crypto
from services.privacy.erase import live_keys
from tests import naming
from tests.gateway.asgi import API_KEY, app
from tests.kafkatools import produce, read_all
from tests.privacy.keys import PEPPER, keyring
from tests.privacy.writer import person, write_sealed

pytestmark = pytest.mark.kafka
LAN = ("Nguyễn Thị Lan", "008123456789", "0912345678")


@pytest.fixture
def namespace(kafka_bootstrap: str) -> str:
    ns = "ops" + naming.unique(8)
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(t, ns) for t in TOPICS]))
    return ns


@pytest.fixture
def client(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> TestClient:
    operators = tmp_path / "operators.yaml"
    operators.write_text("duty-officer: operator-key-0123456789\n", encoding="utf-8")
    return TestClient(app(bootstrap=kafka_bootstrap, namespace=namespace, operators_file=operators))


def test_only_an_operator_key_opens_trace_and_erasure(client: TestClient) -> None:
    for headers in ({}, {"X-Operator-Key": "wrong"}, {"X-Api-Key": API_KEY}, {"X-Operator-Key": API_KEY}):
        assert client.get("/v1/trace/TL-1", headers=headers).status_code == 401
        assert client.post("/v1/erasures", json={"cccd": LAN[1]}, headers=headers).status_code == 401


def test_an_operator_traces_a_raw_record(client: TestClient, kafka_bootstrap: str, namespace: str) -> None:
    code = "TL-OPS-" + uuid.uuid4().hex[:6]
    asyncio.run(produce(kafka_bootstrap, scoped(RAW_DOSSIER, namespace).name, [(b"02269", person(code, *LAN), [])]))
    ops = {"X-Operator-Key": "operator-key-0123456789"}
    answer = client.get(f"/v1/trace/{code}", headers=ops)
    assert answer.status_code == 200, answer.text
    assert [s["stage"] for s in answer.json()["steps"]] == ["raw"]
    assert LAN[0] not in answer.text and LAN[1] not in answer.text  # metadata only
    assert client.get("/v1/trace/TL-NOTHING-HERE", headers=ops).status_code == 404


def test_a_trace_past_its_deadline_is_stopped_mid_read_and_answered_504(kafka_bootstrap: str, namespace: str,
                                                                       tmp_path: Path) -> None:
    """On the real broker a trace takes seconds (a reader per topic); given 0.3 s it is cancelled in its thread, its
    reader closed within the clients' stop deadline, and answered 504; the next one is not refused busy (its slot
    was given back). Before: no deadline."""
    operators = tmp_path / "operators.yaml"
    operators.write_text("duty-officer: operator-key-0123456789\n", encoding="utf-8")
    client = TestClient(app(bootstrap=kafka_bootstrap, namespace=namespace, operators_file=operators,
                            trace_timeout_s=0.3, trace_concurrency=1))
    for _ in range(2):
        asked = time.monotonic()
        answer = client.get("/v1/trace/TL-1", headers={"X-Operator-Key": "operator-key-0123456789"})
        took = time.monotonic() - asked
        print(f"504 after {took:.2f} s")
        assert answer.status_code == 504 and answer.json()["error"] == "trace_timeout", answer.text
        assert took < 0.3 + CLOSE_TIMEOUT_S


def test_an_operator_erases_an_applicant(client: TestClient, kafka_bootstrap: str, namespace: str) -> None:
    asyncio.run(write_sealed(kafka_bootstrap, namespace, keyring(), [person("TL-ERASE", *LAN)]))
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    subject = crypto.cccd_subject(PEPPER, LAN[1])
    assert asyncio.run(live_keys(conn, namespace, subject))
    answer = client.post("/v1/erasures", json={"cccd": LAN[1], "phone": LAN[2]},
                         headers={"X-Operator-Key": "operator-key-0123456789"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["subject"] == subject and answer.json()["keys_destroyed"] == 1
    assert [(e["identifier"], e["keys_destroyed"]) for e in answer.json()["erasures"]] == [("cccd", 1), ("phone", 0)]
    assert asyncio.run(live_keys(conn, namespace, subject)) == set()
    audit, _phone = asyncio.run(read_all(kafka_bootstrap, scoped(PRIVACY_AUDIT, namespace).name, expect=2, timeout=30))
    record = ErasureAudit.model_validate(orjson.loads(audit.value or b""))
    assert record.requested_by == "operator:duty-officer" and record.via == "gateway"
    assert LAN[1] not in (audit.value or b"").decode() and LAN[2] not in (_phone.value or b"").decode()
    bad = client.post("/v1/erasures", json={"cccd": "12"}, headers={"X-Operator-Key": "operator-key-0123456789"})
    assert bad.status_code == 422


def test_an_erasure_the_broker_refuses_is_a_503_not_a_done(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The audit topic refuses the audit record (over its `max.message.bytes`): the erasure's transaction aborts and
    the operator is told to send it again (503), not that it was done, nor a 500."""
    ns = "ops" + naming.unique(8)
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    audit = scoped(PRIVACY_AUDIT, ns)
    asyncio.run(ensure_topics(conn, [replace(audit, config={"max.message.bytes": "128"})]))
    asyncio.run(ensure_topics(conn, [scoped(t, ns) for t in TOPICS]))
    operators = tmp_path / "operators.yaml"
    operators.write_text("duty-officer: operator-key-0123456789\n", encoding="utf-8")
    client = TestClient(app(bootstrap=kafka_bootstrap, namespace=ns, operators_file=operators))
    answer = client.post("/v1/erasures", json={"cccd": LAN[1]}, headers={"X-Operator-Key": "operator-key-0123456789"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "broker_unavailable" and answer.headers["Retry-After"]
    assert LAN[1] not in answer.text
    assert asyncio.run(read_all(kafka_bootstrap, audit.name, idle=1)) == []
