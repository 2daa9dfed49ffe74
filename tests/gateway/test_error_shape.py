"""Every answer of the gateway has its error shape (`error`, `message`, `errors`): Starlette's own 404/405 and the
operators' endpoints too."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.telemetry import ANSWERS
from tests.gateway.asgi import API_KEY, app, call

pytestmark = pytest.mark.unit
OPERATOR_KEY = "operator-key-0123456789"


async def test_an_unknown_path_is_a_404_in_the_gateways_error_shape() -> None:
    answer = await call(app(), [(b"x-api-key", API_KEY.encode())], b"{}", path=b"/v1/nothing")
    assert answer.status == 404
    assert answer.json() == {"error": "not_found", "message": "Not Found", "errors": []}


@pytest.mark.parametrize("path", [b"/docs", b"/redoc"])
def test_no_documentation_page_loads_scripts_from_a_cdn(path: bytes) -> None:
    """FastAPI's /docs and /redoc pages fetch their scripts from cdn.jsdelivr.net (walkthrough): not served; the
    contract stays at /openapi.json."""
    client = TestClient(app())
    answer = client.get(path.decode())
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"
    contract = client.get("/openapi.json")
    assert contract.status_code == 200 and contract.json()["info"]["title"] == "commune-bus ingest gateway"


async def test_a_wrong_method_is_a_405_that_says_which_are_allowed() -> None:
    answer = await call(app(), [], b"", path=b"/healthz")
    assert answer.status == 405 and answer.headers["allow"] == "GET"
    assert answer.json()["error"] == "method_not_allowed" and "detail" not in answer.json()


@pytest.fixture
def operators(tmp_path: Path) -> TestClient:
    """A gateway with one operator, its broker nowhere (nothing listens on port 1) and no PRIVACY_PEPPER."""
    (tmp_path / "operators.yaml").write_text(f"duty-officer: {OPERATOR_KEY}\n", encoding="utf-8")
    return TestClient(app(bootstrap="127.0.0.1:1", operators_file=tmp_path / "operators.yaml"))


def test_the_operators_endpoints_answer_in_the_error_shape(operators: TestClient,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """401, 413, 422 and 503 of GET /v1/trace and POST /v1/erasures: `error`, `message`, `errors` (were without
    `errors`)."""
    monkeypatch.delenv("PRIVACY_PEPPER", raising=False)
    monkeypatch.delenv("PRIVACY_PEPPER_FILE", raising=False)
    key = {"X-Operator-Key": OPERATOR_KEY}
    answers = [operators.get("/v1/trace/TL-1"), operators.get("/v1/trace/TL-1", headers=key),
               operators.post("/v1/erasures", content=b"{}"), operators.post("/v1/erasures", content=b" " * 2000,
                                                                             headers=key),
               operators.post("/v1/erasures", content=b"{}", headers=key),
               operators.post("/v1/erasures", json={"cccd": "008123456789"}, headers=key)]
    assert [a.status_code for a in answers] == [401, 503, 401, 413, 422, 503]
    for answer in answers:
        assert set(answer.json()) == {"error", "message", "errors"}, answer.text


def test_a_trace_query_is_checked_after_the_operator_key(operators: TestClient) -> None:
    """A query of 129 characters without a key: 401 (it was a 422 before any key); with the key, a 422 in the error
    shape; neither is counted as an answer to POST /v1/events."""
    counted = ANSWERS.labels("422")._value.get()
    assert operators.get("/v1/trace/" + "x" * 129).status_code == 401
    answer = operators.get("/v1/trace/" + "x" * 129, headers={"X-Operator-Key": OPERATOR_KEY})
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_parameters"
    assert operators.get("/v1/trace/TL-1", headers={"X-Operator-Key": "k" * 201}).status_code == 422
    assert ANSWERS.labels("422")._value.get() == counted


@pytest.mark.parametrize(("path", "location"), [("/v1/events/", "/v1/events"),
                                                ("/v1/events/?family=dossier", "/v1/events?family=dossier"),
                                                ("/v1/events//", "/v1/events")])
def test_a_trailing_slash_redirects_within_the_gateway_whatever_the_host_header(path: str, location: str) -> None:
    """A 307 to the route, method and body kept, with a Location of the path alone: Starlette's own redirect built
    an absolute URL from the Host header, so a request with `Host: attacker.example` was told to send its events
    there (a cache or proxy in between would keep that answer for others)."""
    client = TestClient(app())
    answer = client.post(path, content=b"{}", headers={"Host": "attacker.example"}, follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == location


@pytest.mark.parametrize("path", ["//attacker.example/", "/v1/nothing/", "/"])
def test_a_path_no_route_has_with_or_without_its_slash_is_a_404_not_a_redirect(path: str) -> None:
    answer = TestClient(app()).post(path, content=b"{}", follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers and answer.json()["error"] == "not_found"
