"""Stored Idempotency answers in bounded memory: whole bodies within a byte budget, the oldest dropped first; a
key whose body was dropped stays answered (nothing is published twice) and its replay is rebuilt from the retry,
or outlined when it cannot be; an empty key is no key (in process)."""

from __future__ import annotations

import gc
import tracemalloc

import orjson
import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.claims import Answer
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, CREDENTIALS, REGISTRY, Body, Clock, Recording, app, call
from tests.samples import canonical_dossier, with_data

pytestmark = pytest.mark.unit
KEEP = 24 * 3600.0
BUDGET = 64 * 1024
KEYS = 200


def big_answer(n: int) -> Answer:
    """A 202 for 300 events: about 19 KB of JSON, 30 KB as the dicts and strings the table used to hold."""
    ids = [f"tl-2025-{n:06d}-{i:04d}" for i in range(300)]
    return Answer(202, {"accepted": len(ids), "ids": ids, "trace_ids": [f"{n:016x}{i:016x}" for i in range(300)]})


async def test_the_answers_kept_fit_the_budget_and_every_key_stays_answered() -> None:
    """200 keys answered with 19 KB each (3.8 MB): the table keeps 64 KiB of bodies plus a few hundred bytes a key;
    the oldest keys lose their bodies, not their answer: the same request still learns it was answered (202 and
    its count), another request with the key is still refused."""
    clock = Clock(0.0)
    claims = MemoryClaims(clock, BUDGET)
    await claims.claim("warm-up", "fp", 60)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(KEYS):
        said = await claims.claim(f"idem:s:{n}", "fp", 60)
        assert said.ticket is not None
        await claims.settle(said.ticket, big_answer(n), KEEP, sealed=True)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held < BUDGET + KEYS * 1024, f"{held} bytes held for {KEYS} keys"
    first, last = await claims.claim("idem:s:0", "fp", 60), await claims.claim(f"idem:s:{KEYS - 1}", "fp", 60)
    assert first.outcome == last.outcome == "answered" and first.answer is not None and last.answer is not None
    assert first.answer.body is None and first.answer.answer() == Answer(202, {"accepted": 300, "ids": [],
                                                                               "trace_ids": []})
    assert first.answer.matches(big_answer(0)) and not first.answer.matches(big_answer(1))
    assert last.answer.answer() == big_answer(KEYS - 1)
    assert (await claims.claim("idem:s:0", "another request", 60)).outcome == "other_request"


def client_keeping_no_body(pub: Recording) -> TestClient:
    """A gateway whose claims keep no answer's body (a budget of 0): every replay has to do without one."""
    return TestClient(create_app(GatewaySettings(idempotency_answer_bytes=0), REGISTRY, CREDENTIALS, pub,
                                 clock=Clock()))


def post(client: TestClient, records: list[dict[str, object]], **headers: str) -> tuple[int, dict[str, str], bytes]:
    answer = client.post("/v1/events", content=orjson.dumps(records),
                         headers={"x-api-key": API_KEY, "content-type": "application/json", **headers})
    return answer.status_code, dict(answer.headers), answer.content


def test_a_replay_whose_body_was_dropped_is_rebuilt_from_the_retry_when_it_is_the_same() -> None:
    """The retry of a 202 and of a 422 gets the first answer, word for word, rebuilt from the retried request;
    nothing is published again."""
    pub = Recording()
    client = client_keeping_no_body(pub)
    valid = [canonical_dossier("a-1"), canonical_dossier("a-2")]
    invalid = [canonical_dossier("b-1"), with_data(canonical_dossier("b-2"), status=9)]
    for n, (records, status) in enumerate(((valid, 202), (invalid, 422))):
        key = {"idempotency-key": f"key-{n}"}
        code, headers, first = post(client, records, **key)
        assert code == status and "idempotent-replayed" not in headers
        again, headers, replayed = post(client, records, **key)
        assert (again, replayed) == (status, first)
        assert headers["idempotent-replayed"] == "true" and "idempotent-lists" not in headers
    assert len(pub.sent) == 1


def test_a_replay_that_cannot_be_rebuilt_is_outlined_and_says_so() -> None:
    """A retry whose answer would differ (another traceparent: other trace ids): the first status and counts, the
    lists empty, `Idempotent-Lists: omitted`; nothing is published again."""
    pub = Recording()
    client = client_keeping_no_body(pub)
    records, key = [canonical_dossier("t-1"), canonical_dossier("t-2")], {"idempotency-key": "key-t"}
    assert post(client, records, **key)[0] == 202
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    code, headers, body = post(client, records, **key, traceparent=other)
    assert code == 202 and orjson.loads(body) == {"accepted": 2, "ids": [], "trace_ids": []}
    assert headers["idempotent-replayed"] == "true" and headers["idempotent-lists"] == "omitted"
    assert len(pub.sent) == 1


@pytest.mark.parametrize("key", [b"", b"   "])
async def test_an_empty_idempotency_key_is_refused_not_taken_as_a_key(key: bytes) -> None:
    """`Idempotency-Key:` empty (a client's unset variable) was a key: the second request sent with it, another
    batch, got 422 idempotency_key_reused for 24 h. Now a 400 in the error shape, the body unread, and nothing
    claimed: the same source's requests without the header are published as ever."""
    pub = Recording()
    gateway = app(pub)
    headers = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json"), (b"idempotency-key", key)]
    for event in ("e-1", "e-2"):
        data = orjson.dumps(canonical_dossier(event))
        body = Body(size=len(data), chunks=1, data=data)
        answer = await call(gateway, headers, body)
        assert answer.status == 400 and answer.json()["error"] == "empty_idempotency_key", answer.body
        assert set(answer.json()) == {"error", "message", "errors"} and body.read == 0
        assert (await call(gateway, headers[:2], data)).status == 202
    assert len(pub.sent) == 2


async def test_a_source_holds_a_bounded_number_of_keys_and_retries_and_other_sources_go_on() -> None:
    """Every key a source sends is kept by every instance for 24 h (~1 KB each): one integrator sending a fresh
    key with each request at its allowed rate held 3.7 GB a day on every instance. Past its quota a new key is
    429 `idempotency_keys_exhausted`, nothing published; a retry of a held key still gets its answer, a request
    without a key is published, and once the keys expire new ones are taken again."""
    pub, clock = Recording(), Clock(0.0)
    gateway = app(pub, clock, idempotency_keys_per_source=3)
    base = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json")]

    async def send(event: str, key: str | None) -> int:
        extra = [(b"idempotency-key", key.encode())] if key is not None else []
        return (await call(gateway, base + extra, orjson.dumps(canonical_dossier(event)))).status

    assert [await send(f"q-{n}", f"key-{n}") for n in range(3)] == [202, 202, 202]
    refused = await call(gateway, [*base, (b"idempotency-key", b"key-3")], orjson.dumps(canonical_dossier("q-3")))
    assert refused.status == 429 and refused.json()["error"] == "idempotency_keys_exhausted"
    assert "retry-after" in refused.headers and len(pub.sent) == 3
    assert await send("q-0", "key-0") == 202 and len(pub.sent) == 3  # a replay of a held key: nothing new
    assert await send("q-4", None) == 202 and len(pub.sent) == 4
    clock.now = KEEP + 60  # the keys expire (pruned with the next claim)
    assert await send("q-5", "key-5") == 202 and len(pub.sent) == 5
