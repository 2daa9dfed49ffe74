"""A request framed twice (`Content-Length` and `Transfer-Encoding`) is refused 400 `bad_framing` and its connection
closed (`services.gateway.framing`): nothing after it on the connection is read as a request.

Before: h11 read the body by its chunked encoding and kept the connection, so the bytes after the chunked end were
answered as a request of their own; a load balancer framing the same bytes by their Content-Length saw one request
(request smuggling; RFC 9112 §6.3 asks the server to close such a connection; audit of 2026-12-05)."""

from __future__ import annotations

import socket

import pytest

from tests.gateway.asgi import API_KEY, Body, Recording, app, call

pytestmark = pytest.mark.unit
KEY = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json")]


@pytest.mark.parametrize("path", [b"/v1/events", b"/healthz", b"/v1/nowhere"])
async def test_a_request_with_both_lengths_is_refused_unread_and_closed(path: bytes) -> None:
    """Both headers, on any path: 400 in the gateway's error shape, `Connection: close`, not a byte of the body read,
    nothing published."""
    body, pub = Body(chunks=None), Recording()
    answer = await call(app(pub), [*KEY, (b"content-length", b"4"), (b"transfer-encoding", b"chunked")], body,
                        path=path)
    assert answer.status == 400 and answer.json()["error"] == "bad_framing", answer.body
    assert answer.headers["connection"] == "close"
    assert body.read == 0 and pub.sent == []


async def test_one_length_alone_is_read_as_before() -> None:
    """Content-Length alone, or Transfer-Encoding alone: read and checked (400 for an empty array, not bad_framing)."""
    for framing in [(b"content-length", b"2"), (b"transfer-encoding", b"chunked")]:
        answer = await call(app(), [*KEY, framing], b"[]")
        assert answer.json()["error"] != "bad_framing", answer.body


@pytest.mark.parametrize("framing", [b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                                     b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"])
def test_on_the_real_server_nothing_after_a_request_framed_twice_is_answered(served: int, framing: bytes) -> None:
    """A CL.TE smuggling shape in one packet: the chunked body ends at once and a second request follows. One answer,
    400 `bad_framing`, then the connection ends; the second request is never answered (before: 400 `bad_body` for
    the empty chunked body, then 200 for the smuggled request, the connection kept)."""
    with socket.create_connection(("127.0.0.1", served), timeout=5) as conn:
        conn.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n" + framing + b"\r\n0\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := conn.recv(65536):  # the server closes: a timeout here fails the test
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 "), received
    assert b'"error":"bad_framing"' in received and received.count(b"HTTP/1.1 ") == 1, received
