"""Driving the gateway app in process, one ASGI call at a time, with a body that counts how much of it was read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.keys import Credential
from services.gateway.memory_claims import MemoryClaims
from services.gateway.publisher import BrokerUnavailable
from services.gateway.settings import GatewaySettings
from services.sources.registry import Source, SourceRegistry

API_KEY = "unit-api-key-6c1e9a"
HMAC_KEY = b"unit-hmac-key-2f8d47"
REGISTRY = SourceRegistry(sources=(
    Source(id="one-stop", sources=("/communes/02269/one-stop",), families=("dossier",), communes=("02269",)),
    Source(id="province", sources=("/provinces/08/dossiers", "/communes/02269/one-stop"), families=("dossier",),
           provinces=("08",)),
))
CREDENTIALS = {"one-stop": Credential(api_key=SecretStr(API_KEY)),
               "province": Credential(hmac_key=SecretStr(HMAC_KEY.decode()))}


class Recording:
    """A publisher that keeps what it was asked to publish (or fails like a broker that is down)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[list[Any]] = []
        self.fail = fail

    async def publish(self, records: list[Any], until: float = float("inf")) -> None:
        if self.fail:
            raise BrokerUnavailable("down")
        self.sent.append(records)

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Body:
    """A request body of `chunks` chunks of `size` bytes (None: never ending); `read` counts those handed out."""

    size: int = 16 * 1024
    chunks: int | None = None
    read: int = 0
    data: bytes = b""

    def __post_init__(self) -> None:
        self.data = self.data or b"x" * self.size

    def take(self) -> tuple[bytes, bool]:
        """The next chunk, and whether more follow."""
        self.read += 1
        return self.data, self.chunks is None or self.read < self.chunks


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return orjson.loads(self.body)


def app(publisher: Recording | None = None, clock: Clock | None = None, **settings: Any) -> FastAPI:
    return create_app(GatewaySettings(**settings), REGISTRY, CREDENTIALS, publisher or Recording(),
                      clock=clock or Clock(), claims=MemoryClaims(clock or Clock()))


async def call(application: FastAPI, headers: list[tuple[bytes, bytes]], body: Body | bytes, *,
               path: bytes = b"/v1/events", query: bytes = b"", client: str = "127.0.0.1") -> Answer:
    """POST through the ASGI interface itself (from the peer address `client`): the app reads the body only as
    far as it asks for it."""
    source = Body(len(body), 1, data=body) if isinstance(body, bytes) else body

    async def receive() -> dict[str, Any]:
        chunk, more = source.take()
        return {"type": "http.request", "body": chunk, "more_body": more}

    answer = Answer(0)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path.decode(), "raw_path": path, "query_string": query, "root_path": "",
             "headers": [(k.lower(), v) for k, v in headers], "client": (client, 1), "server": ("test", 80)}
    await application(scope, receive, send)
    return answer
