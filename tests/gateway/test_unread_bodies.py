"""An answer given before the request's body ended closes the connection (`services.gateway.unread`): a client
refused from its headers cannot keep a connection busy sending a body nobody reads.

Before: 401, 403, 429 and 422 answers kept the connection, and uvicorn drained the rest of the body at the body-rate
allowance with no size limit (103 MiB after a 401, the connection still open after 40 s; review of 2026-12-02)."""

from __future__ import annotations

import contextlib
import socket

import pytest

from tests.gateway.asgi import API_KEY, Body, app, call
from tests.samples import canonical_dossier, dumps

pytestmark = pytest.mark.unit
EVENT = dumps(canonical_dossier("unread-1"))


def headers(key: str, length: int, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"x-api-key", key.encode()), (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()), *extra]


@pytest.mark.parametrize(("key", "query", "path", "status"), [
    ("not-the-key-0000000000", b"", b"/v1/events", 401),  # refused from the headers
    (API_KEY, b"commune=x", b"/v1/events", 422),  # a bad parameter, before the handler runs
    (API_KEY, b"", b"/v1/nowhere", 404),
])
async def test_an_answer_before_the_body_ended_closes_the_connection(key: str, query: bytes, path: bytes,
                                                                     status: int) -> None:
    body = Body(64 * 1024, chunks=None)  # never ends: only what the app asks for is handed out
    answer = await call(app(), headers(key, 10 * 1024 * 1024), body, query=query, path=path)
    assert answer.status == status, answer.body
    assert answer.headers.get("connection") == "close"
    assert body.read <= 1


async def test_a_body_read_to_its_end_keeps_the_connection() -> None:
    """Accepted (202), and refused after reading the body (422 for its records): kept alive, as before."""
    accepted = await call(app(), headers(API_KEY, len(EVENT)), EVENT)
    assert accepted.status == 202, accepted.body
    refused = await call(app(), headers(API_KEY, 2), b"[]")
    assert refused.status in (400, 422), refused.body
    assert "connection" not in accepted.headers and "connection" not in refused.headers


def test_on_the_real_server_the_refused_body_is_not_drained(served: int) -> None:
    """uvicorn with the gateway's protocol: a wrong key, then a chunked body sent as fast as the server takes it.
    The server answers 401 with `Connection: close` and closes; the client can't push more than a few MiB (socket
    buffers). Before: 103 MiB taken, still open."""
    with socket.create_connection(("127.0.0.1", served), timeout=5) as conn:
        conn.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: not-the-key-0000000000\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        head = conn.recv(65536)
        assert head.startswith(b"HTTP/1.1 401") and b"connection: close" in head.lower(), head
        chunk = b"%x\r\n" % (64 * 1024) + b"x" * (64 * 1024) + b"\r\n"
        sent = 0
        with contextlib.suppress(OSError):  # reset by the server, or a timeout once it stops reading
            conn.settimeout(2)
            while sent < 100 * 1024 * 1024:
                conn.sendall(chunk)
                sent += len(chunk)
        assert sent < 100 * 1024 * 1024, f"the server took {sent >> 20} MiB of a refused request's body"
