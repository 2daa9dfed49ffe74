"""A bug in a route is a counted, logged 500 `internal_error` in the gateway's error shape, and its message (which
may quote a record) never reaches the log (`services.gateway.bugs`); an answer the server's `send` refuses (uvicorn
already answered a malformed request 400) is not a bug."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys

import h11
import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.bugs import AnswerBugs
from tests.gateway.asgi import API_KEY
from tests.kafkatools import ROOT
from tests.waiting import eventually

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


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def counts() -> tuple[float, float]:
    """This process's internal errors and unsent answers (the `served` gateway runs in a thread of it)."""
    return sample("commune_gateway_internal_errors_total"), sample("commune_gateway_answers_unsent_total")


def answer(port: int, request: bytes) -> bytes:
    """What the server answers to `request` sent whole, up to its close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        with contextlib.suppress(OSError):  # refused part-way: its answer is still to be read
            conn.sendall(request)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                received += chunk
    return received


KEY = b"X-Api-Key: " + API_KEY.encode() + b"\r\nContent-Type: text/plain\r\n"  # answered 415 at once, unread
CHUNKED = b"Host: x\r\nTransfer-Encoding: chunked\r\n"
# Each arrives whole with its headers: uvicorn answers 400 while the route answers on its own, without reading the
# body (a route that reads it first finds the connection gone, and uvicorn drops its answer without a word)
BAD_CHUNKS = {
    "no credential, POST /v1/events (401)": b"POST /v1/events HTTP/1.1\r\n" + CHUNKED + b"\r\nzz\r\nxx\r\n",
    "API key, POST /v1/events (415)": b"POST /v1/events HTTP/1.1\r\n" + KEY + CHUNKED + b"\r\nzz\r\nxx\r\n",
    "GET /healthz (200)": b"GET /healthz HTTP/1.1\r\n" + CHUNKED + b"\r\nzz\r\n",
    "GET /nowhere (404)": b"GET /nowhere HTTP/1.1\r\n" + CHUNKED + b"\r\nzz\r\n",
    "5,000 one-byte chunks (chunks.py), API key (415)": b"POST /v1/events HTTP/1.1\r\n" + KEY + CHUNKED + b"\r\n"
    + b"1\r\n \r\n" * 5000,
}


@pytest.mark.parametrize("request_bytes", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_a_malformed_chunked_request_is_not_counted_as_a_bug(served: int, request_bytes: bytes,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Through the real server: a bad chunk in the packet of the headers, or too many tiny chunks, gets uvicorn's
    400, and the route's own answer goes nowhere: not counted as an internal error (before: `commune_gateway_
    internal_errors_total` +1 each, and the alert on it fired for any anonymous client), not even as unsent, and no
    ERROR line from uvicorn ("ASGI callable returned without completing response": one a request, for anyone)."""
    ended: list[int] = []
    real = AnswerBugs.__call__

    async def call(self: AnswerBugs, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await real(self, scope, receive, send)
        finally:
            ended.append(1)

    monkeypatch.setattr(AnswerBugs, "__call__", call)
    before = counts()
    received = answer(served, request_bytes)
    assert received.startswith(b"HTTP/1.1 400 "), received[:200]
    eventually(lambda: ended, what="the route's end")  # it answers in its own task, maybe after the 400 is read
    assert counts() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def run_middleware(route: ASGIApp, send: Send) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    await AnswerBugs(route)({"type": "http", "path": "/healthz", "method": "GET", "headers": []}, receive, send)


async def refusing(message: Message) -> None:
    """The server's `send` once uvicorn has answered the request itself."""
    raise h11.LocalProtocolError("can't handle event type Response when role=SERVER and state=MUST_CLOSE")


async def test_an_answer_the_server_refuses_is_counted_apart() -> None:
    """A route whose `send` raises (the server answered already) is not a bug: unsent +1, internal errors +0."""
    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    before = counts()
    await run_middleware(route, refusing)
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [0.0, 1.0]


async def test_a_bug_while_handling_a_refused_answer_is_still_a_bug() -> None:
    """A route that catches its refused `send` and then fails on its own (the failure only in `__context__`), or a
    route that fails after its answer started: each is an internal error, counted."""
    async def clumsy(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except h11.LocalProtocolError:
            int("x")

    async def late(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        int("x")

    sent: list[Message] = []

    async def accepting(message: Message) -> None:
        sent.append(message)

    before = counts()
    await run_middleware(clumsy, refusing)
    await run_middleware(late, accepting)
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [2.0, 0.0]
    assert [m["type"] for m in sent] == ["http.response.start"]  # nothing more can be said once an answer started
