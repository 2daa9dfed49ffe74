"""The budget of bodies held (ADR 0040) while they arrive and once they are in: a source's uploads still arriving hold
its share, and the total only once they are in and loaded; whatever a request ends with, it gives its bytes back.
The gateway app in process, through ASGI."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from services.gateway import handler
from services.gateway.app import create_app
from services.gateway.keys import Credential
from services.gateway.memory_claims import MemoryClaims
from services.gateway.receive import Receiver
from services.gateway.settings import GatewaySettings
from services.sources.registry import Source, SourceRegistry
from tests.gateway.asgi import Body, Clock, Recording, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
MiB = 1024 * 1024
IDS = ("one-stop", "a", "b")
REGISTRY = SourceRegistry(sources=tuple(
    Source(id=i, sources=("/communes/02269/one-stop",), families=("dossier",), communes=("02269",)) for i in IDS))
CREDENTIALS = {i: Credential(api_key=SecretStr(f"unit-api-key-{i}-0123456789")) for i in IDS}


def headers(source: str, length: int | None = None) -> list[tuple[bytes, bytes]]:
    return [(b"x-api-key", f"unit-api-key-{source}-0123456789".encode()), (b"content-type", b"application/json"),
            *([(b"content-length", str(length).encode())] if length is not None else [])]


def gateway(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> tuple[Any, Receiver]:
    """The app with `settings`, and its receiver (whose budgets the tests read)."""
    made: list[Receiver] = []
    real = Receiver.__post_init__

    def post_init(self: Receiver) -> None:
        real(self)
        made.append(self)

    monkeypatch.setattr(Receiver, "__post_init__", post_init)
    app = create_app(GatewaySettings(**settings), REGISTRY, CREDENTIALS, Recording(), clock=Clock(),
                     claims=MemoryClaims(Clock()))
    [receiver] = made
    return app, receiver


def upload(app: Any, source: str, length: int) -> asyncio.Task[None]:
    """A POST declaring `length` bytes whose body does not come (a slow link: at the 4 KiB/s the connection guard
    allows, 8 MiB take 34 minutes)."""
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/events", "raw_path": b"/v1/events", "query_string": b"", "root_path": "",
             "headers": headers(source, length), "client": ("10.0.0.1", 1), "server": ("test", 80)}
    return asyncio.create_task(app(scope, receive, send))


async def settled(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("not reached")


def empty(receiver: Receiver) -> bool:
    return (receiver.held.held, receiver.held.by_key, receiver.memory.held) == (0, {}, 0)


async def test_uploads_still_arriving_hold_their_sources_share_and_not_everyones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sources each with two 8 MiB uploads still arriving (their 16 MiB shares, the default 32 MiB in all):
    another source's 1 KiB event is taken (202; it was 503 `busy` for as long as the uploads lasted, review of
    2026-12-06), and a third upload of a full source is 429. Once the uploads end (cancelled), nothing is held."""
    app, receiver = gateway(monkeypatch)
    uploads = [upload(app, source, 8 * MiB) for source in ("a", "a", "b", "b")]
    await settled(lambda: receiver.held.by_key == {"a": 16 * MiB, "b": 16 * MiB})
    assert receiver.held.held == 0  # nothing of them in memory yet: the total is not theirs
    small = await call(app, headers("one-stop"), orjson.dumps(canonical_dossier("small-1")))
    assert small.status == 202, small.body
    third = await call(app, headers("a", 8 * MiB), Body(64 * 1024, 128))
    assert (third.status, third.json()["error"]) == (429, "rate_limited")
    for task in uploads:
        task.cancel()
    await asyncio.gather(*uploads, return_exceptions=True)
    assert empty(receiver)


async def test_bodies_in_and_waiting_for_their_check_hold_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies that have arrived are loaded whole for their check: with the check held back, two sources' 1 MiB
    bodies fill a 2 MiB total and a third source's body is refused 503 `busy` once it is in, unchecked. After the
    check goes on, every request is answered and nothing is held."""
    gate = threading.Event()
    real_plan = handler.plan

    def plan(body: bytes, *args: Any, **kwargs: Any) -> Any:
        gate.wait(timeout=30)
        return real_plan(body, *args, **kwargs)

    monkeypatch.setattr(handler, "plan", plan)
    monkeypatch.setattr(handler, "INLINE_CHECK_BYTES", 0)  # every check in the worker thread, where the gate holds
    app, receiver = gateway(monkeypatch, max_body_bytes=MiB, held_body_bytes=2 * MiB, held_body_bytes_per_source=MiB)
    body = b" " * (MiB - 1024)
    waiting = [asyncio.create_task(call(app, headers(s), body)) for s in ("a", "b")]
    await settled(lambda: receiver.held.held == 2 * len(body))
    refused = await call(app, headers("one-stop"), body)
    assert (refused.status, refused.json()["error"]) == (503, "busy")
    gate.set()
    answers = await asyncio.gather(*waiting)
    assert [a.status for a in answers] == [400, 400]  # spaces are no body: checked and answered `bad_body`
    assert empty(receiver)
