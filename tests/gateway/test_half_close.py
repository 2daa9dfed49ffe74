"""A client that ends its side of the connection after its request (`shutdown(SHUT_WR)`: `nc -N`, some HTTP/1.0
clients) still gets its answer; uvicorn closed the connection at the client's EOF, so a request whose events the
gateway published was answered with nothing (audit: 3 of 3 on the real gateway over Kafka)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest

from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, Recording
from tests.gateway.conftest import serving
from tests.kafkatools import free_port
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


class Slow(Recording):
    """A publisher that answers as a broker does: a moment later (the in-process one answered before the EOF was
    read)."""

    async def publish(self, records: list[Any], until: float = float("inf")) -> None:
        await asyncio.sleep(0.5)
        await super().publish(records, until)


def request(body: bytes, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    return (b"POST /v1/events " + version + b"\r\nHost: x\r\nX-Api-Key: " + API_KEY.encode() + b"\r\n" + extra +
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def answered(port: int, data: bytes) -> bytes:
    """Send `data`, end the sending side, read until the server closes (a timeout fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("version, extra", [(b"HTTP/1.1", b""), (b"HTTP/1.1", b"Connection: close\r\n"),
                                            (b"HTTP/1.0", b"")], ids=["keep-alive", "connection-close", "http-1.0"])
def test_a_request_followed_by_the_clients_eof_is_answered_then_closed(version: bytes, extra: bytes) -> None:
    """Kept alive or not (HTTP/1.0 and `Connection: close` leave h11's client state at MUST_CLOSE, not DONE: the
    first version of the fix missed them, a review)."""
    publisher = Slow()
    with serving(GatewaySettings(port=free_port()), publisher=publisher) as port:
        received = answered(port, request(orjson.dumps(canonical_dossier()), version, extra))
    assert received.startswith(b"HTTP/1.1 202 "), received
    assert received.count(b"HTTP/1.1 ") == 1 and len(publisher.sent) == 1


def test_a_request_cut_short_by_the_clients_eof_is_not_published() -> None:
    """EOF in the middle of the body: closed, nothing published (as before)."""
    publisher = Slow()
    with serving(GatewaySettings(port=free_port()), publisher=publisher) as port:
        whole = request(orjson.dumps(canonical_dossier()))
        received = answered(port, whole[:-5])
    assert b"HTTP/1.1 202" not in received and publisher.sent == []
