"""On SIGTERM the gateway says `/readyz` 503 at once and keeps serving its API for `GATEWAY_STOP_DELAY_S`, so a load
balancer stops sending before the port closes (real broker, `python -m services.gateway`)."""

from __future__ import annotations

import signal
import uuid

import httpx
import orjson
import pytest

from tests.gateway.conftest import API_KEY, Site
from tests.samples import canonical_dossier

pytestmark = pytest.mark.kafka
HEADERS = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}


def publish(url: str) -> int:
    body = orjson.dumps(canonical_dossier("stopping-" + uuid.uuid4().hex[:8]))
    return httpx.post(url + "/v1/events", content=body, headers=HEADERS, timeout=30).status_code


def test_readyz_says_503_while_the_api_still_serves_after_sigterm(site: Site) -> None:
    """After SIGTERM the API port answers `/readyz` 503 "stopping" and still publishes a request (202); the process
    then ends 0. Before, `/readyz` said 200 until the port closed, at once: the 503 never reached a load balancer."""
    gateway = site.start("g-stop", GATEWAY_STOP_DELAY_S="5", GATEWAY_STOP_REQUESTS_S="5")
    assert publish(gateway.url) == 202
    gateway.proc.send_signal(signal.SIGTERM)
    answers: list[int | str] = []
    while gateway.proc.poll() is None and 503 not in answers:
        try:
            answer = httpx.get(gateway.url + "/readyz", timeout=5)
        except httpx.TransportError as exc:  # the port closed: the stop went by without a 503
            answers.append(type(exc).__name__)
            break
        answers.append(answer.status_code)
        if answer.status_code == 503:
            assert orjson.loads(answer.content)["detail"] == "stopping"
    assert 503 in answers, f"/readyz answered {answers} after SIGTERM, never 503 while serving"
    assert publish(gateway.url) == 202
    assert gateway.proc.wait(timeout=60) == 0
