"""The HTTP gateway on the real broker, driven with curl: 202 only after Kafka, precise 4xx, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from schemas import trace, wire
from services.gateway.auth import RequestLine, sign
from tests.integrator.conftest import API_KEY, HMAC_KEY, Stack, start_gateway
from tests.integrator.kafka_read import ce_id, wait_for
from tests.kafkatools import free_port, stop_service
from tests.samples import canonical_dossier, portal_dossier, with_data
from tests.waiting import eventually

pytestmark = pytest.mark.kafka


def curl(url: str, body: bytes | str, *headers: str, tmp: Path) -> tuple[int, dict[str, str], dict]:
    """POST with the real curl binary; returns status, response headers (lower-case) and JSON body."""
    data = tmp / f"body-{uuid.uuid4().hex}.json"
    data.write_bytes(body.encode() if isinstance(body, str) else body)
    args = ["curl", "-sS", "-D", "-", "-X", "POST", url, "--data-binary", f"@{data}",
            "-H", "Content-Type: application/json"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args, capture_output=True, timeout=30, check=True).stdout.decode()
    head, _, payload = out.partition("\r\n\r\n")
    assert payload, out
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, hdrs, json.loads(payload)


def fresh(**data: object) -> dict:
    event = canonical_dossier("gw-" + uuid.uuid4().hex[:12])
    return with_data(event, **data) if data else event


def test_valid_key_gets_202_and_the_event_reaches_the_canonical_topic(stack: Stack, tmp_path: Path) -> None:
    """curl with a valid API key: 202 with the event ids, then the same ids on commune.events.dossier."""
    batch = [fresh(), fresh(status=4)]
    status, _, body = curl(stack.url + "/v1/events", json.dumps(batch), f"X-Api-Key: {API_KEY}", tmp=tmp_path)
    assert status == 202, body
    assert body == {"accepted": 2, "ids": [e["id"] for e in batch],
                    "trace_ids": [trace.trace_id(trace.derive(e["source"], e["id"])) for e in batch]}
    ids = set(body["ids"])
    canonical = wait_for(stack.bootstrap, stack.topic("commune.events.dossier"),
                         lambda rs: ids <= {ce_id(r) for r in rs})
    got = [wire.decode(r.headers, r.value) for r in canonical if ce_id(r) in ids]
    assert sorted(e.id for e in got) == sorted(ids) and all(r.key == b"02269" for r in canonical if ce_id(r) in ids)


def test_portal_shape_with_commune_header_and_ndjson(stack: Stack, tmp_path: Path) -> None:
    """Portal dossiers as NDJSON with X-Commune-Code are accepted and stamped with the caller's source."""
    code = "TL-" + uuid.uuid4().hex[:8]
    lines = "\n".join(json.dumps(portal_dossier(code, status=s)) for s in (2, 4)) + "\n"
    status, _, body = curl(stack.url + "/v1/events", lines, f"X-Api-Key: {API_KEY}", "X-Commune-Code: 02269",
                           "Content-Type: application/x-ndjson", tmp=tmp_path)
    assert status == 202 and body["accepted"] == 2, body
    canonical = wait_for(stack.bootstrap, stack.topic("commune.events.dossier"),
                         lambda rs: set(body["ids"]) <= {ce_id(r) for r in rs})
    events = [wire.decode(r.headers, r.value) for r in canonical if ce_id(r) in body["ids"]]
    assert {e.source for e in events} == {"/communes/02269/one-stop"} and {e.subject for e in events} == {code}


def test_bad_batch_lists_each_bad_record_and_publishes_nothing(stack: Stack, tmp_path: Path) -> None:
    """A batch with 2 bad records of 3: 422, one error per bad record (index, field, reason), none of it on Kafka."""
    good, missing_end, bad_commune = fresh(), fresh(status=9), {**fresh(), "commune": "99999"}
    status, _, body = curl(stack.url + "/v1/events", json.dumps([good, missing_end, bad_commune]),
                           f"X-Api-Key: {API_KEY}", tmp=tmp_path)
    assert status == 422
    assert [(e["index"], e["field"], e["reason"]) for e in body["errors"]] == [
        (1, "data.ended_at", "missing_field"), (2, "commune", "unknown_commune")]
    # A record accepted after the refusal is a fence: the gateway's transactions run one after another, so
    # once the marker is readable on raw, anything published before it is readable too.
    marker = fresh()
    status, _, body = curl(stack.url + "/v1/events", json.dumps(marker), f"X-Api-Key: {API_KEY}", tmp=tmp_path)
    assert status == 202, body
    raw = wait_for(stack.bootstrap, stack.topic("commune.raw.dossier"),
                   lambda rs: marker["id"] in {ce_id(r) for r in rs})
    assert good["id"] not in {ce_id(r) for r in raw}, "the good record of a rejected batch was published"


def test_wrong_key_is_401_and_foreign_commune_is_403(stack: Stack, tmp_path: Path) -> None:
    """A wrong API key gets 401; a valid key publishing for a commune outside its registry entry gets 403."""
    status, _, body = curl(stack.url + "/v1/events", json.dumps(fresh()), "X-Api-Key: wrong", tmp=tmp_path)
    assert status == 401 and body["error"] == "unauthenticated" and "wrong" not in json.dumps(body)
    elsewhere = {**fresh(), "commune": "00691", "province": "08"}  # same province, another commune
    status, _, body = curl(stack.url + "/v1/events", json.dumps(elsewhere), f"X-Api-Key: {API_KEY}", tmp=tmp_path)
    assert status == 403 and body["errors"][0]["reason"] == "unauthorised_source"
    assert body["errors"][0]["field"] == "commune"


def test_hmac_signature_authenticates_and_a_tampered_body_does_not(stack: Stack, tmp_path: Path) -> None:
    """HMAC-signed requests pass for the signed body only; a body changed after signing gets 401."""
    event = {**fresh(), "source": "/provinces/20/dossiers", "commune": "05977", "province": "20"}
    body = json.dumps(event).encode()
    signature = sign(HMAC_KEY.encode(), RequestLine(b"POST", b"/v1/events", b""), int(time.time()), body)
    args = ("X-Source-Id: lang-son-dossiers", f"X-Signature: {signature}")
    status, _, _ = curl(stack.url + "/v1/events", body.replace(b"05977", b"05983"), *args, tmp=tmp_path)
    assert status == 401
    status, _, ok = curl(stack.url + "/v1/events", body, *args, tmp=tmp_path)
    assert status == 202 and ok["ids"] == [event["id"]], ok


def test_idempotency_key_makes_a_retry_safe(stack: Stack, tmp_path: Path) -> None:
    """The same Idempotency-Key twice: the same 202 answer, one record on the raw topic; another body is refused."""
    event = fresh()
    key = f"Idempotency-Key: {uuid.uuid4()}"
    first = curl(stack.url + "/v1/events", json.dumps(event), f"X-Api-Key: {API_KEY}", key, tmp=tmp_path)
    again = curl(stack.url + "/v1/events", json.dumps(event), f"X-Api-Key: {API_KEY}", key, tmp=tmp_path)
    assert first[0] == again[0] == 202 and first[2] == again[2]
    assert again[1].get("idempotent-replayed") == "true"
    other = curl(stack.url + "/v1/events", json.dumps(fresh()), f"X-Api-Key: {API_KEY}", key, tmp=tmp_path)
    assert other[0] == 422 and other[2]["error"] == "idempotency_key_reused"
    raw = wait_for(stack.bootstrap, stack.topic("commune.raw.dossier"),
                   lambda rs: event["id"] in {ce_id(r) for r in rs})
    assert [ce_id(r) for r in raw].count(event["id"]) == 1


def readyz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_readyz_once_the_broker_answered_and_metrics_off_the_api_port(stack: Stack) -> None:
    """The stack's gateway becomes ready (its producer started); /metrics is served on GATEWAY_HTTP_PORT (with the
    probes again) and is a 404 on the API port, which integrators reach."""

    def ready() -> tuple[int, dict]:
        answer = readyz(stack.url)
        assert answer[0] == 200, answer
        return answer

    answer = eventually(ready, timeout=20, interval=0.2, what="/readyz 200")
    assert answer == (200, {**answer[1], "ready": True, "detail": "broker answered"})
    with urllib.request.urlopen(stack.metrics_url + "/metrics", timeout=5) as r:
        assert "commune_gateway_answers_total" in r.read().decode()
    assert readyz(stack.metrics_url)[0] == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(stack.url + "/metrics", timeout=5)
    assert refused.value.code == 404


def test_broker_unavailable_is_503_with_retry_after(stack: Stack, tmp_path: Path) -> None:
    """A gateway whose broker does not answer says 503 + Retry-After, and does not remember it under the key."""
    dead = f"127.0.0.1:{free_port()}"
    proc, url = start_gateway(stack.files, dead, stack.namespace, GATEWAY_KAFKA_TIMEOUT_S="2")
    try:
        status, report = readyz(url)
        assert status == 503 and report["ready"] is False
        key = f"Idempotency-Key: {uuid.uuid4()}"
        for _ in range(2):  # the retry is really retried (503 is not stored), and answers 503 again
            status, headers, body = curl(url + "/v1/events", json.dumps(fresh()), f"X-Api-Key: {API_KEY}", key,
                                         tmp=tmp_path)
            assert status == 503 and headers.get("retry-after") == "5" and body["error"] == "broker_unavailable"
            assert "idempotent-replayed" not in headers
    finally:
        stop_service(proc)


def test_concurrent_requests_are_all_acknowledged_and_published(stack: Stack) -> None:
    """Twelve concurrent requests (grouped into shared transactions) all get 202 and all their events reach raw."""
    import asyncio

    import httpx

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, headers={"X-Api-Key": API_KEY}, timeout=30) as http:
            return await asyncio.gather(*(http.post("/v1/events", json=[fresh(), fresh()]) for _ in range(12)))

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [202] * 12
    ids = {i for r in responses for i in r.json()["ids"]}
    assert len(ids) == 24
    raw = wait_for(stack.bootstrap, stack.topic("commune.raw.dossier"), lambda rs: ids <= {ce_id(r) for r in rs})
    assert ids <= {ce_id(r) for r in raw}


def test_the_callers_traceparent_follows_the_event_to_the_canonical_topic(stack: Stack, tmp_path: Path) -> None:
    """A W3C `traceparent` header becomes the event's ce_traceparent on the raw and canonical topics; the 202 names
    its trace id. A malformed one is ignored (W3C Trace Context): the event keeps its derived trace."""
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event, other = fresh(), fresh()
    status, _, body = curl(stack.url + "/v1/events", json.dumps(event), f"X-Api-Key: {API_KEY}",
                           f"traceparent: {parent}", tmp=tmp_path)
    assert status == 202 and body["trace_ids"] == ["4bf92f3577b34da6a3ce929d0e0e4736"], body
    status, _, body = curl(stack.url + "/v1/events", json.dumps(other), f"X-Api-Key: {API_KEY}",
                           "traceparent: 00-not-a-trace-01", tmp=tmp_path)
    assert status == 202 and body["trace_ids"] == [trace.trace_id(trace.derive(other["source"], other["id"]))]
    canonical = wait_for(stack.bootstrap, stack.topic("commune.events.dossier"),
                         lambda rs: {event["id"], other["id"]} <= {ce_id(r) for r in rs})
    by_id = {ce_id(r): dict(r.headers)["ce_traceparent"].decode() for r in canonical}
    assert by_id[event["id"]] == parent
    assert by_id[other["id"]] == trace.derive(other["source"], other["id"])
