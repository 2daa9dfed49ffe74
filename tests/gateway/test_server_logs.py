"""uvicorn's own log records (an exception out of the ASGI app) are rendered as the gateway's events, by type and
place, never with the exception's message: `server_config` gives uvicorn no logging configuration of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.kafkatools import ROOT

pytestmark = pytest.mark.unit  # loopback only: needs no broker
PHONE = "0987654321"

# the gateway's server configuration around an app with no `AnswerBugs` in front: uvicorn logs the exception itself
SCRIPT = f'''
import asyncio, httpx
from fastapi import FastAPI
from services.common.logging import configure
from services.gateway.__main__ import _Server, server_config
from services.gateway.settings import GatewaySettings
from tests.kafkatools import free_port

app = FastAPI()

@app.get("/bug")
async def bug():
    int("{PHONE}x")

async def main():
    configure("INFO", json=True)
    settings = GatewaySettings(port=free_port())
    server = _Server(server_config(settings, app))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{{settings.port}}/bug")
    print(answer.status_code, flush=True)
    server.should_exit = True
    await serving

asyncio.run(main())
'''


def test_uvicorns_log_of_an_exception_has_its_type_and_place_not_its_message() -> None:
    """An app's exception reaching uvicorn: answered 500, logged as one JSON line of logger `uvicorn.error` with the
    exception's type and place; the phone number its message quotes nowhere (before: uvicorn's own handler printed
    "Exception in ASGI application" and the traceback with the message)."""
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["500"]
    assert PHONE not in run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines()]
    [logged] = [e for e in events if e["logger"] == "uvicorn.error"]
    assert logged["event"] == "Exception in ASGI application" and logged["level"] == "error"
    assert logged["exception"].startswith("ValueError at ")


GARBAGE = '''
import asyncio
from fastapi import FastAPI
from services.common.logging import configure
from services.gateway.__main__ import _Server, server_config
from services.gateway.settings import GatewaySettings
from tests.kafkatools import free_port

async def garbage(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"NOT HTTP AT ALL\\r\\n\\r\\n")
    await writer.drain()
    await reader.read()  # uvicorn answers 400 and hangs up
    writer.close()

async def main():
    configure("INFO", json=True)
    settings = GatewaySettings(port=free_port())
    server = _Server(server_config(settings, FastAPI()))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    for _ in range(50):
        await garbage(settings.port)
    print("sent", flush=True)
    server.should_exit = True
    await serving

asyncio.run(main())
'''


def test_uvicorns_warnings_that_any_peer_can_cause_are_logged_sparingly() -> None:
    """50 connections that send no HTTP: uvicorn's "Invalid HTTP request received." once, not 50 times (audit: a
    line each, a peer's free way to fill the log); errors are never held back (the test above)."""
    run = subprocess.run([sys.executable, "-c", GARBAGE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["sent"]
    events = [json.loads(line) for line in run.stderr.splitlines()]
    invalid = [e for e in events if e["logger"] == "uvicorn.error" and e["event"].startswith("Invalid HTTP request")]
    assert len(invalid) == 1 and invalid[0]["level"] == "warning"
