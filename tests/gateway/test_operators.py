"""The operators' endpoints without a broker: a broker that does not answer is a 503 to retry, never a 500, a CCCD
must be twelve ASCII digits, traces run a few at a time within a deadline, and refused keys are logged and counted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.cli.trace import Timeline
from services.common.settings import KafkaConnection
from services.common.sparse import EVERY_S, Sparse
from services.gateway import operators
from tests.gateway.asgi import app
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
OPS = {"X-Operator-Key": "operator-key-0123456789"}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    operators = tmp_path / "operators.yaml"
    operators.write_text("duty-officer: operator-key-0123456789\n", encoding="utf-8")
    return TestClient(app(bootstrap="127.0.0.1:1", operators_file=operators))  # nothing listens there


def test_a_trace_while_the_broker_does_not_answer_is_a_503_to_retry(client: TestClient) -> None:
    answer = client.get("/v1/trace/TL-1", headers=OPS)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "broker_unavailable" and answer.headers["Retry-After"]


@pytest.mark.parametrize("cccd", ["٠١٢٣٤٥٦٧٨٩٠١", "０１２３４５６７８９０１", "01234567890", "0123456789012"])
def test_a_cccd_is_twelve_ascii_digits(client: TestClient, cccd: str) -> None:
    """Unicode digits passed a `\\d` pattern and hashed to a subject no one has: an erasure of nothing, answered 202."""
    answer = client.post("/v1/erasures", json={"cccd": cccd}, headers=OPS)
    assert answer.status_code == 422, answer.text
    assert cccd not in answer.text


@pytest.mark.parametrize("body", [{}, {"cccd": None}, {"phone": "call me"}, {"email": "not-an-address"},
                                  {"zalo": "a b"}, {"cccd": "008123456789", "name": "Nguyễn Thị Lan"},
                                  {"phone": "0" * 40}, {"phone": "-----------"}, {"phone": "( ) ( ) ( )"},
                                  {"subject": "dlq:2026-12-03"}, {"subject": "r-short"}])
def test_an_erasure_names_at_least_one_well_formed_identifier_and_nothing_else(client: TestClient,
                                                                                body: dict[str, object]) -> None:
    """No identifier, a malformed one, or another member (a name has no place here): 422, never echoed."""
    answer = client.post("/v1/erasures", json=body, headers=OPS)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert not [v for v in body.values() if isinstance(v, str) and v in answer.text]


def test_an_erasure_may_name_an_applicants_subject() -> None:
    """The subject a dossier's trace shows (an applicant sealed without any identifier has one of its own): taken as
    it is, beside the others."""
    from services.gateway.operators import ErasureRequest
    from services.privacy.keyring import Keyring

    subject = Keyring.anonymous_subject()
    wanted = ErasureRequest.model_validate({"phone": "0987654321", "subject": subject})
    assert wanted.identifiers() == [("phone", "0987654321"), ("subject", subject)]


class Held:
    """A stand-in for `trace_timeline` that runs until released, recording the calls it is in and whether the
    gateway cancelled it."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.since: list[int | None] = []
        """The `since` of each call (epoch ms, None: the topics whole)."""

    async def __call__(self, conn: KafkaConnection, namespace: str, query: str, since: int | None = None) -> Timeline:
        with self.lock:
            self.running += 1
            self.since.append(since)
        try:
            while not self.release.is_set():  # noqa: ASYNC110 - set from the test's thread; this runs on another loop
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            with self.lock:
                self.cancelled += 1
            raise
        finally:
            with self.lock:
                self.running -= 1
        return Timeline([])


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    fake = Held()
    monkeypatch.setattr(operators, "trace_timeline", fake)
    try:
        yield fake
    finally:
        fake.release.set()  # no worker thread outlives the test, whatever it asserted


def in_process(tmp_path: Path, **settings: object) -> httpx.AsyncClient:
    operators_file = tmp_path / "operators.yaml"
    operators_file.write_text("duty-officer: operator-key-0123456789\n", encoding="utf-8")
    gateway = app(bootstrap="127.0.0.1:1", operators_file=operators_file, **settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway", headers=OPS)


async def test_traces_past_the_concurrency_cap_are_refused_at_once(tmp_path: Path, held: Held) -> None:
    """GATEWAY_TRACE_CONCURRENCY=2: with two traces running a third is answered 503 `busy` with Retry-After at once,
    not queued; once they end, traces run again. Before: every call ran, each reading every topic in a thread of its
    own (8 at once took 6.7 to 8 s each)."""
    async with in_process(tmp_path, trace_concurrency=2) as client:
        running = [asyncio.create_task(client.get(f"/v1/trace/TL-{n}")) for n in range(2)]
        await eventually_async(lambda: held.running == 2, what="two traces running")
        asked = time.monotonic()
        excess = await asyncio.wait_for(client.get("/v1/trace/TL-3"), timeout=5)
        assert time.monotonic() - asked < 1
        assert excess.status_code == 503 and excess.json()["error"] == "busy", excess.text
        assert excess.headers["Retry-After"]
        held.release.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [404, 404]
        assert (await client.get("/v1/trace/TL-4")).status_code == 404


async def test_a_trace_past_its_deadline_is_stopped_and_answered_504(tmp_path: Path, held: Held) -> None:
    """GATEWAY_TRACE_TIMEOUT_S=0.5: a trace still reading then is cancelled in its thread and answered 504
    `trace_timeout`, and its slot is free again. Before: no deadline (3.4 s on a near-empty namespace, unbounded on a
    full one)."""
    async with in_process(tmp_path, trace_concurrency=1, trace_timeout_s=0.5) as client:
        asked = time.monotonic()
        late = await asyncio.wait_for(client.get("/v1/trace/TL-1"), timeout=10)
        assert time.monotonic() - asked < 0.5 + 2
        assert late.status_code == 504 and late.json()["error"] == "trace_timeout", late.text
        assert held.cancelled == 1 and held.running == 0
        assert (await asyncio.wait_for(client.get("/v1/trace/TL-2"), timeout=10)).status_code == 504  # not busy


def refusals(endpoint: str, key: str) -> float:
    labels = {"endpoint": endpoint, "key": key}
    return REGISTRY.get_sample_value("commune_gateway_operator_keys_refused_total", labels) or 0.0


def test_a_refused_operator_key_is_logged_and_counted(client: TestClient) -> None:
    """A wrong or missing X-Operator-Key: 401, counted by endpoint and key (wrong, missing) and logged with the peer
    address, never the key sent. Before: a 401, neither logged nor counted."""
    guess = "guessed-key-0123456789"
    operators.REFUSALS_LOGGED.clear()  # another test's refusals within the last seconds would hold the lines back
    before = {(e, k): refusals(e, k) for e in ("trace", "erasures") for k in ("wrong", "missing")}
    with capture_logs() as logs:
        assert client.get("/v1/trace/TL-1", headers={"X-Operator-Key": guess}).status_code == 401
        assert client.post("/v1/erasures", json={"cccd": "008123456789"},
                           headers={"X-Operator-Key": guess}).status_code == 401
        assert client.get("/v1/trace/TL-1").status_code == 401
    after = {(e, k): refusals(e, k) - before[(e, k)] for e, k in before}
    assert after == {("trace", "wrong"): 1, ("trace", "missing"): 1, ("erasures", "wrong"): 1,
                     ("erasures", "missing"): 0}
    refused = [entry for entry in logs if entry["event"] == "operator.refused"]
    assert [(e["endpoint"], e["key"], e["peer"]) for e in refused] == [
        ("trace", "wrong", "testclient"), ("erasures", "wrong", "testclient"), ("trace", "missing", "testclient")]
    assert guess not in repr(logs)


def test_a_flood_of_refused_keys_is_counted_whole_and_logged_sparingly(client: TestClient,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """200 wrong keys in a row: all counted, one log line (review: one line each, a free way to flood the log);
    the next line, once `sparse.EVERY_S` has passed, says how many were refused since the last."""
    now = [1000.0]
    monkeypatch.setattr(operators, "REFUSALS_LOGGED", Sparse(clock=lambda: now[0]))
    before = refusals("trace", "wrong")
    with capture_logs() as logs:
        for _ in range(200):
            assert client.get("/v1/trace/TL-1", headers={"X-Operator-Key": "wrong-key-0123456789"}).status_code == 401
    assert refusals("trace", "wrong") - before == 200
    assert [e["refused_since_last"] for e in logs if e["event"] == "operator.refused"] == [1]
    now[0] += EVERY_S
    with capture_logs() as logs:
        assert client.get("/v1/trace/TL-1", headers={"X-Operator-Key": "wrong-key-0123456789"}).status_code == 401
    assert [e["refused_since_last"] for e in logs if e["event"] == "operator.refused"] == [200]


async def test_since_bounds_the_trace_and_is_checked_after_the_key(tmp_path: Path, held: Held) -> None:
    """`?since=30d` reads from 30 days ago (the time reaches `trace_timeline`), a date from that date, none the
    topics whole; text that is neither is a 422 naming the forms, without echoing it, and only for a caller with an
    operator key (a 401 before: the rule is not checked for anyone else)."""
    held.release.set()
    async with in_process(tmp_path) as client:
        asked_ms = time.time() * 1000
        assert (await client.get("/v1/trace/TL-1", params={"since": "30d"})).status_code == 404
        assert (await client.get("/v1/trace/TL-1", params={"since": "2026-11-01"})).status_code == 404
        assert (await client.get("/v1/trace/TL-1")).status_code == 404
        thirty_days, date, whole = held.since
        assert thirty_days is not None and abs(thirty_days - (asked_ms - 30 * 86_400_000)) < 60_000
        assert date == 1_793_466_000_000 and whole is None  # 2026-11-01 00:00 Vietnam time
        bad = await client.get("/v1/trace/TL-1", params={"since": "last tuesday 0987654321"})
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_parameters", bad.text
        assert "30d" in bad.text and "0987654321" not in bad.text
        anonymous = await client.get("/v1/trace/TL-1", params={"since": "last tuesday"},
                                     headers={"X-Operator-Key": ""})
        assert anonymous.status_code == 401, anonymous.text
        assert len(held.since) == 3
