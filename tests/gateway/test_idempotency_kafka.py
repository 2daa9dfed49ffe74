"""Idempotency-Keys and signature nonces shared by gateway instances and kept across restarts (real broker)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson
import pytest

from schemas.topics import GATEWAY_CLAIMS, scoped
from services.common import clients
from services.common.settings import KafkaConnection
from services.gateway.auth import RequestLine, sign
from services.gateway.claims import Answer, ClaimRecord
from services.gateway.idempotency import idempotency_claim
from tests.gateway.conftest import API_KEY, HMAC_KEY, Gateway, Site
from tests.integrator.kafka_read import ce_id, wait_for
from tests.samples import canonical_dossier

pytestmark = pytest.mark.kafka


def raw_ids_after_markers(site: Site, *gateways: Gateway) -> list[str | None]:
    """Every event id on the raw dossier topic once a fresh marker from each gateway is readable there: each
    gateway's transactions commit in order, so whatever it published before its marker is readable too."""
    markers = []
    for gateway in gateways:
        marker = canonical_dossier("marker-" + uuid.uuid4().hex[:10])
        assert post(gateway, orjson.dumps(marker)).status_code == 202
        markers.append(marker["id"])
    raw = wait_for(site.bootstrap, f"{site.namespace}.commune.raw.dossier",
                   lambda rs: set(markers) <= {ce_id(r) for r in rs})
    return [ce_id(r) for r in raw]


def post(gateway: Gateway, body: bytes, key: str | None = None, **headers: str) -> httpx.Response:
    sent = {"X-Api-Key": API_KEY, "Content-Type": "application/json", **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return httpx.post(gateway.url + "/v1/events", content=body, headers=sent, timeout=30)


def test_two_instances_given_the_same_key_publish_once(site: Site) -> None:
    """Six concurrent requests with one key, three to each of two gateways: one publishes, the others get 409 or
    its answer; afterwards both replay it, another body is refused, and the raw topic holds the event once."""
    g1, g2 = site.start("g1"), site.start("g2")
    event = canonical_dossier("idem-" + uuid.uuid4().hex[:10])
    body, key = orjson.dumps(event), str(uuid.uuid4())

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as http:
            headers = {"X-Api-Key": API_KEY, "Idempotency-Key": key, "Content-Type": "application/json"}
            return await asyncio.gather(*(http.post(g.url + "/v1/events", content=body, headers=headers)
                                          for g in (g1, g2, g1, g2, g1, g2)))

    answers = asyncio.run(race())
    assert {a.status_code for a in answers} <= {202, 409}, [a.text for a in answers]
    first = [a for a in answers if a.status_code == 202 and "idempotent-replayed" not in a.headers]
    assert len(first) == 1, [(a.status_code, dict(a.headers)) for a in answers]
    for gateway in (g1, g2):
        again = post(gateway, body, key)
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (202, "true"), again.text
        assert again.json() == first[0].json()
        assert again.json()["accepted"] == 1 and again.json()["ids"] == [event["id"]]
        other = post(gateway, orjson.dumps(canonical_dossier("other-" + uuid.uuid4().hex[:8])), key)
        assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    assert raw_ids_after_markers(site, g1, g2).count(event["id"]) == 1


def test_a_restarted_gateway_keeps_its_keys_and_nonces(site: Site) -> None:
    """A key answered before a restart is replayed after it (nothing published again); a signature used before
    the restart is still refused after it."""
    g1 = site.start("g1")
    event = canonical_dossier("restart-" + uuid.uuid4().hex[:10])
    body, key = orjson.dumps(event), str(uuid.uuid4())
    assert post(g1, body, key).status_code == 202
    signed = {**canonical_dossier("signed-" + uuid.uuid4().hex[:8]), "source": "/provinces/20/dossiers",
              "commune": "05977", "province": "20"}
    signed_body = orjson.dumps(signed)
    headers = {"X-Source-Id": "lang-son-dossiers", "Content-Type": "application/json",
               "X-Signature": sign(HMAC_KEY.encode(), RequestLine(b"POST", b"/v1/events", b""), int(time.time()),
                                   signed_body)}
    assert httpx.post(g1.url + "/v1/events", content=signed_body, headers=headers, timeout=30).status_code == 202
    assert site.stop(g1) == 0
    g1 = site.start("g1")
    again = post(g1, body, key)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (202, "true"), again.text
    replayed = httpx.post(g1.url + "/v1/events", content=signed_body, headers=headers, timeout=30)
    assert replayed.status_code == 401 and "already used" in replayed.json()["message"]
    ids = raw_ids_after_markers(site, g1)
    assert ids.count(event["id"]) == 1 and ids.count(signed["id"]) == 1


def test_a_signature_replayed_to_another_instance_is_refused(site: Site) -> None:
    """A signed request accepted by one gateway is 401 at another: nonces are shared, not per process."""
    g1, g2 = site.start("g1"), site.start("g2")
    event = {**canonical_dossier("nonce-" + uuid.uuid4().hex[:8]), "source": "/provinces/20/dossiers",
             "commune": "05977", "province": "20"}
    body = orjson.dumps(event)
    headers = {"X-Source-Id": "lang-son-dossiers", "Content-Type": "application/json",
               "X-Signature": sign(HMAC_KEY.encode(), RequestLine(b"POST", b"/v1/events", b""), int(time.time()),
                                   body)}
    assert httpx.post(g1.url + "/v1/events", content=body, headers=headers, timeout=30).status_code == 202
    replay = httpx.post(g2.url + "/v1/events", content=body, headers=headers, timeout=30)
    assert replay.status_code == 401, replay.text
    assert raw_ids_after_markers(site, g1, g2).count(event["id"]) == 1


def test_expired_keys_read_back_at_start_do_not_count_against_the_quota(site: Site) -> None:
    """The claims topic keeps 48 h, keys live 24 h: a gateway (re)starting reads expired keys back. With a quota of
    2 and the source's two keys on the topic expired an hour ago, a new key is taken at once. Before (review), they
    counted until the reader's first prune 30 s later: 429 `idempotency_keys_exhausted` after every restart."""
    now = time.time()
    topic = scoped(GATEWAY_CLAIMS, site.namespace).name

    async def write_expired() -> None:
        producer = clients.producer(KafkaConnection(bootstrap=site.bootstrap), client_id="test-claims")
        await producer.start()
        try:
            for n in range(2):
                key = idempotency_claim("thuong-lam-one-stop", f"old-{n}")
                rec = ClaimRecord(key, "done", f"c{n}", "fp", now - 90_000, now - 3600, Answer(202, {"accepted": 1}))
                await producer.send_and_wait(topic, rec.encode(), key=rec.record_key.encode())
        finally:
            await producer.stop()

    asyncio.run(write_expired())
    gateway = site.start("quota", GATEWAY_IDEMPOTENCY_KEYS_PER_SOURCE="2")
    answer = post(gateway, orjson.dumps(canonical_dossier("quota-" + uuid.uuid4().hex[:10])), key="new-key")
    assert answer.status_code == 202, answer.text
