"""A chunked body of a great many tiny chunks is cut as malformed (`services.gateway.chunks`): h11 spends ~5 µs on
each chunk, so without a bound a client with no credential (a registry id and any signature: the HMAC is checked once
the body has arrived) held the event loop ~0.25 s per read it sent. Audit of 2026-12-05: four connections sending
1-byte chunks, ~1 MB/s in all, kept `/healthz` from answering for 30 s and took 34 s of CPU."""

from __future__ import annotations

import contextlib
import socket

import pytest

from services.gateway.chunks import FREE_CHUNKS, chunks_allowed
from tests.gateway.asgi import API_KEY, Clock
from tests.samples import canonical_dossier, dumps

pytestmark = pytest.mark.unit
HEAD = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Source-Id: province\r\nX-Signature: t=%d,v1=" + b"0" * 64 +
        b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")


def answer(port: int, request: bytes) -> bytes:
    """What the server answers to `request` sent whole, up to its close (a timeout fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        with contextlib.suppress(OSError):  # refused part-way: its answer is still to be read
            conn.sendall(request)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def test_the_allowance_grows_with_the_body() -> None:
    """Some chunks free (a client streaming one record a chunk), then one per 512 bytes on average."""
    assert chunks_allowed(0) == FREE_CHUNKS >= 2048
    assert chunks_allowed(10 * 1024 * 1024) == FREE_CHUNKS + 20480


def test_a_body_of_tiny_chunks_is_cut_unread_to_its_end(served: int) -> None:
    """100,000 one-byte chunks from a client without a valid signature: 400, the connection closed, long before
    the body's end (before: read to its end, then 401)."""
    received = answer(served, HEAD % int(Clock().now) + b"1\r\n \r\n" * 100_000 + b"0\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 "), received[:200]


def test_a_batch_sent_one_record_a_chunk_is_read(served: int) -> None:
    """1,000 records as NDJSON, each line its own chunk: read whole and checked (202)."""
    lines = [dumps(canonical_dossier(f"chunks-{i}")) + b"\n" for i in range(1000)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(line), line) for line in lines) + b"0\r\n\r\n"
    received = answer(served, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + API_KEY.encode() +
                      b"\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                      b"\r\n" + body)
    assert received.startswith(b"HTTP/1.1 202 "), received[:300]


@pytest.mark.parametrize("size, refused", [(12 * 1024, False), (40 * 1024, True), (120 * 1024, True)])
def test_a_request_head_past_16_kib_is_refused_even_when_it_arrives_in_one_read(served: int, size: int,
                                                                               refused: bool) -> None:
    """uvicorn's `h11_max_incomplete_event_size` bounds only a head that arrives over several reads: one sent whole
    (~100 KB of headers, the audit's probe) was read and answered. Now 400 and closed past 16 KiB, however it came."""
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(size // 1012))
    received = answer(served, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + padding + b"Connection: close\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 " if refused else b"HTTP/1.1 200 "), received[:200]
