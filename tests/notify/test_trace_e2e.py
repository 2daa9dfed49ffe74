"""Where is my record, end to end on the real broker: a dossier sent through the gateway (HMAC-signed, with the
caller's `traceparent`) traced to its SMS at the local provider, and a rejected raw record traced by its trace id
to its dead letter and reason (issue 13)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from schemas import trace
from schemas.events import Family
from schemas.topics import RAW, TOPICS, scoped
from services.cli.trace import table, trace_record
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.gateway.auth import RequestLine, sign
from services.notify.topics import Names
from tests.integrator.conftest import HMAC_KEY, REGISTRY, SECRETS, start_gateway
from tests.kafkatools import free_port, produce, start_service, stop_service
from tests.notify.conftest import StartNotify
from tests.notify.test_trace_context import HeaderProviders
from tests.samples import canonical_dossier, dumps, recent
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OPERATOR_KEY = "duty-officer-key-5e1f0c"
APPLICANT = ("Trần Văn Minh", "0987654321")


@pytest.fixture
async def fake() -> AsyncIterator[HeaderProviders]:
    """The local fake providers (a real HTTP server), keeping each call's `traceparent` header (overrides conftest)."""
    providers = HeaderProviders()
    await providers.start()
    yield providers
    await providers.stop()


async def stack_topics(bootstrap: str, namespace: str) -> None:
    await ensure_topics(KafkaConnection(bootstrap=bootstrap), [scoped(t, namespace) for t in TOPICS])


def start_intake(bootstrap: str, namespace: str, files: Path) -> Any:
    (files / "sources.yaml").write_text(REGISTRY, encoding="utf-8")
    return start_service("services.intake", {
        "KAFKA_BOOTSTRAP": bootstrap, "INTAKE_NAMESPACE": namespace, "INTAKE_HTTP_PORT": str(free_port()),
        "INTAKE_SOURCES_FILE": str(files / "sources.yaml")}, files / "intake.log")


async def test_a_dossier_sent_through_the_gateway_is_traced_to_its_sms(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: HeaderProviders,
        tmp_path: Path) -> None:
    """Gateway (HMAC, traceparent) -> intake -> notify -> SMS provider: `trace <trace id>` (gateway endpoint) and
    `trace <dossier code>` (the CLI's function) both show raw, canonical, notification sent, in time order, one
    trace id throughout; the provider got that trace id in its `traceparent` header; notify's log line names it."""
    await stack_topics(kafka_bootstrap, namespace)
    intake = start_intake(kafka_bootstrap, namespace, tmp_path)
    gateway = None
    try:
        start_notify(NOTIFY_SUBSCRIBERS_FILE="")
        (tmp_path / "secrets.yaml").write_text(SECRETS, encoding="utf-8")
        (tmp_path / "operators.yaml").write_text(f"duty-officer: {OPERATOR_KEY}\n", encoding="utf-8")
        gateway, url = start_gateway(tmp_path, kafka_bootstrap, namespace,
                                     GATEWAY_OPERATORS_FILE=str(tmp_path / "operators.yaml"))
        code = f"LS-TRACE-{namespace[-6:]}"
        event = {**recent(canonical_dossier(f"gw-trace-{namespace}", dossier_code=code)), "subject": code,
                 "source": "/provinces/20/dossiers", "commune": "05977", "province": "20"}
        body = orjson.dumps(event)
        signature = sign(HMAC_KEY.encode(), RequestLine(b"POST", b"/v1/events", b""), int(time.time()), body)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/events", data=body, headers={
                    "Content-Type": "application/json", "X-Source-Id": "lang-son-dossiers",
                    "X-Signature": signature, "traceparent": PARENT}) as answer:
                accepted = await answer.json()
                assert answer.status == 202 and accepted["trace_ids"] == [TRACE_ID], accepted

            async def traced_to_the_sms() -> list[dict[str, Any]]:
                async with http.get(f"{url}/v1/trace/{TRACE_ID}", headers={"X-Operator-Key": OPERATOR_KEY}) as got:
                    text = await got.text()
                    assert got.status == 200, text
                steps: list[dict[str, Any]] = orjson.loads(text)["steps"]
                assert [s["stage"] for s in steps] == ["raw", "canonical", "notification"], steps
                assert APPLICANT[0] not in text and APPLICANT[1] not in text  # metadata only
                return steps

            steps = await eventually_async(traced_to_the_sms, timeout=45, interval=0.5,
                                           what="the trace to reach the SMS", )
        assert [s["trace"] for s in steps] == [TRACE_ID] * 3
        assert [s["at_ms"] for s in steps] == sorted(s["at_ms"] for s in steps)
        assert f"subject {code}" in steps[1]["what"] and "sms to applicant: sent" in steps[2]["what"]
        [(nid, sms)] = fake.accepted.items()
        assert sms.path == "/sms" and sms.body["to"] == APPLICANT[1] and f"id {nid}" in steps[2]["what"]
        assert trace.trace_id(fake.traceparents[nid]) == TRACE_ID
        by_code = await trace_record(KafkaConnection(bootstrap=kafka_bootstrap), namespace, code)
        assert [(s.stage, s.trace) for s in by_code] == [(s["stage"], s["trace"]) for s in steps]
        sent = [ln for ln in (tmp_path / "notify.log").read_text().splitlines() if "notify.sent" in ln]
        assert len(sent) == 1 and TRACE_ID in sent[0] and APPLICANT[1] not in sent[0]
    finally:
        if gateway is not None:
            stop_service(gateway)
        stop_service(intake)


async def test_a_rejected_raw_record_is_traced_by_its_trace_id_to_its_dead_letter_and_reason(
        kafka_bootstrap: str, namespace: str, tmp_path: Path) -> None:
    """A record with a `ce_traceparent` header that intake rejects: `trace <trace id>` finds the raw record and
    its dead letter with the reason and field, both under that trace id, and shows no value."""
    await stack_topics(kafka_bootstrap, namespace)
    intake = start_intake(kafka_bootstrap, namespace, tmp_path)
    try:
        bad = {**canonical_dossier(f"bad-{namespace}"), "time": "0001-01-01T00:00:00"}
        await produce(kafka_bootstrap, scoped(RAW[Family.DOSSIER], namespace).name,
                      [(b"02269", dumps(bad), [("ce_traceparent", PARENT.encode())])])
        conn = KafkaConnection(bootstrap=kafka_bootstrap)

        async def dead_lettered() -> list[Any]:
            steps = await trace_record(conn, namespace, TRACE_ID)
            assert [s.stage for s in steps] == ["raw", "dead letter"], steps
            return steps

        raw, dead = await eventually_async(dead_lettered, timeout=45, interval=0.5, what="the dead letter")
    finally:
        stop_service(intake)
    assert dead.what.startswith("value_out_of_range (time)") and raw.where in dead.what
    assert raw.trace == dead.trace == TRACE_ID and raw.at_ms <= dead.at_ms
    shown = str([c._cells for c in table([raw, dead]).columns])
    assert APPLICANT[0] not in shown and APPLICANT[1] not in shown
