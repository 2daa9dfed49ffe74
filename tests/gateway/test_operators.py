"""The operators' endpoints without a broker: a broker that does not answer is a 503 to retry, never a 500, and a
CCCD must be twelve ASCII digits."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.gateway.asgi import app

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
                                  {"phone": "0" * 40}, {"phone": "-----------"}, {"phone": "( ) ( ) ( )"}])
def test_an_erasure_names_at_least_one_well_formed_identifier_and_nothing_else(client: TestClient,
                                                                                body: dict[str, object]) -> None:
    """No identifier, a malformed one, or another member (a name has no place here): 422, never echoed."""
    answer = client.post("/v1/erasures", json=body, headers=OPS)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert not [v for v in body.values() if isinstance(v, str) and v in answer.text]
