"""Bodies of known callers wait for their check, one at a time, within a byte budget in all and per source, taken
before they are read (the gateway's own server, in process; the check held back until the test lets it go)."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
import time
import tracemalloc
from typing import Any

import orjson
import pytest

from services.gateway import handler
from services.gateway.auth import RequestLine, sign
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, HMAC_KEY
from tests.gateway.conftest import serving
from tests.kafkatools import free_port
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
MiB = 1024 * 1024
POSTS = 12
BODY = b" " * (3 * MiB // 2)
"""Past `handler.INLINE_CHECK_BYTES`: checked in the one worker thread, the others waiting their turn."""


def statuses(conns: list[socket.socket], lines: dict[socket.socket, bytes], wait_s: float) -> None:
    """Read into `lines` the answers (status line, Retry-After) that come back on `conns` within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while (waiting := [c for c in conns if c not in lines]) and (left := deadline - time.monotonic()) > 0:
        for conn in select.select(waiting, [], [], min(left, 0.05))[0]:
            try:
                head = conn.recv(65536).split(b"\r\n\r\n")[0].lower()
            except OSError:
                head = b""
            lines[conn] = b" ".join(line for line in head.split(b"\r\n")
                                    if line.startswith((b"http/1.1", b"retry-after")))


def test_bodies_waiting_for_their_check_hold_no_more_than_the_sources_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """12 POSTs of 1.5 MiB at once with one API key while the check is held back, GATEWAY_HELD_BODY_BYTES_PER_SOURCE
    4 MiB: two are read and wait for their check, the other ten are answered 429 with Retry-After, their bodies
    unread; the bodies in memory grow by less than 6 MiB; another source's request is served meanwhile. Before: all
    12 were read and waited, whole, for the one check thread (18 MiB here; audit: 100 posts of 10 MB, 1.1 GB RSS)."""
    gate, reached = threading.Event(), [0]
    real_plan, real_check = handler.plan, handler.Gateway.check

    def plan(body: bytes, *args: Any, **kwargs: Any) -> Any:
        if len(body) > handler.INLINE_CHECK_BYTES:
            gate.wait(timeout=60)
        return real_plan(body, *args, **kwargs)

    async def check(self: handler.Gateway, *args: Any, **kwargs: Any) -> Any:
        reached[0] += 1
        return await real_check(self, *args, **kwargs)

    monkeypatch.setattr(handler, "plan", plan)
    monkeypatch.setattr(handler.Gateway, "check", check)
    head = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: "
            + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    settings = GatewaySettings(port=free_port(), max_body_bytes=2 * MiB, held_body_bytes=8 * MiB,
                               held_body_bytes_per_source=4 * MiB)
    lines: dict[socket.socket, bytes] = {}
    tracemalloc.start()
    try:
        with serving(settings) as port:
            base = tracemalloc.get_traced_memory()[0]
            posts = []
            for _ in range(POSTS):
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                with contextlib.suppress(OSError):  # refused, and closed, before it was all sent
                    conn.sendall(head + BODY)
                posts.append(conn)
            deadline = time.monotonic() + 30
            while reached[0] + len(lines) < POSTS and time.monotonic() < deadline:
                statuses(posts, lines, wait_s=0.1)
            grown, read = tracemalloc.get_traced_memory()[0] - base, reached[0]
            event = orjson.dumps(canonical_dossier("another-source"))
            other = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            other.request("POST", "/v1/events", event, {
                "X-Source-Id": "province", "Content-Type": "application/json",
                "X-Signature": sign(HMAC_KEY, RequestLine(b"POST", b"/v1/events", b""), 1_764_000_000, event)})
            other_status = other.getresponse().status
            gate.set()
            statuses(posts, lines, wait_s=30)
    finally:
        gate.set()
        tracemalloc.stop()
    answers = sorted(lines.values())
    assert answers.count(b"http/1.1 429 too many requests retry-after: 5") == POSTS - 2, answers
    assert read == 2 and grown < 6 * MiB, f"{read} bodies read, {grown / MiB:.1f} MiB more in memory"
    assert other_status == 202
