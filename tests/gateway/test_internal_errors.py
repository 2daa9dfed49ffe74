"""A bug in a route is a counted, logged 500 `internal_error` in the gateway's error shape, and its message (which
may quote a record) never reaches the log (`services.gateway.bugs`)."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.kafkatools import ROOT

pytestmark = pytest.mark.unit
PHONE = "0987654321"

# a real uvicorn server (the gateway's own configuration) whose publisher meets a bug quoting a phone number
SCRIPT = f'''
import asyncio, httpx, orjson
from prometheus_client import REGISTRY
from services.common.logging import configure
from services.gateway.__main__ import _Server, server_config
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.sources.registry import Source, SourceRegistry
from tests.integrator.test_gateway_app import CREDENTIAL, KEY, Recording
from tests.kafkatools import free_port
from tests.samples import canonical_dossier

class Bug(Recording):
    async def publish(self, records, until=float("inf")):
        int("{PHONE}x")  # ValueError: invalid literal for int() with base 10: '{PHONE}x'

def count(name, labels=None):
    return REGISTRY.get_sample_value(name, labels or {{}}) or 0.0

async def main():
    configure("INFO", json=True)
    settings = GatewaySettings(port=free_port())
    registry = SourceRegistry(sources=(Source(id="one-stop", sources=("/communes/02269/one-stop",),
                                              families=("dossier",), communes=("02269",)),))
    server = _Server(server_config(settings, create_app(settings, registry, {{"one-stop": CREDENTIAL}}, Bug())))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    counts = lambda: (count("commune_gateway_internal_errors_total"),  # noqa: E731
                      count("commune_gateway_answers_total", {{"status": "500"}}))
    before = counts()
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://127.0.0.1:{{settings.port}}/v1/events",
                                 content=orjson.dumps(canonical_dossier("bug-1")), headers=KEY)
    after = counts()
    print(orjson.dumps({{"status": answer.status_code, "body": answer.json(),
                        "connection": answer.headers.get("connection"),
                        "counted": [a - b for a, b in zip(after, before)]}}).decode(), flush=True)
    server.should_exit = True
    await serving

asyncio.run(main())
'''


def test_a_bug_is_answered_500_counted_and_logged_without_its_message() -> None:
    """POST /v1/events whose publishing raises ValueError quoting a phone number, through the real server: 500
    `internal_error` in the error shape with `Connection: close`, counted once as an internal error and once as a
    500 answer; the log has `gateway.internal_error` with the type and place, and the phone number nowhere (before:
    a bare `Internal Server Error`, uncounted, and uvicorn printed the traceback with the message)."""
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    result = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert result["status"] == 500 and result["connection"] == "close"
    assert result["body"]["error"] == "internal_error" and set(result["body"]) == {"error", "message", "errors"}
    assert result["counted"] == [1.0, 1.0]
    [event] = [orjson.loads(line) for line in run.stderr.splitlines()
               if line.startswith("{") and "gateway.internal_error" in line]
    assert event["endpoint"] == "post_events" and event["exception"].startswith("ValueError at ")
    assert PHONE not in run.stderr + run.stdout
