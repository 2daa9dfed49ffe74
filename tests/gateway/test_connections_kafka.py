"""Slow and excess clients against a real gateway process, over raw sockets: headers that never end, a body trickled
below the minimum rate and connections past the cap are closed by the server, and no other client notices."""

from __future__ import annotations

import select
import socket
import time
import urllib.request
import uuid
from urllib.parse import urlsplit

import orjson
import pytest

from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import API_KEY, Gateway, Site
from tests.gateway.test_idempotency_kafka import post
from tests.samples import canonical_dossier
from tests.waiting import eventually

pytestmark = pytest.mark.kafka
MARGIN_S = 2.0
"""Past a deadline, how long the server may take to close (timers, two shared cores)."""


def connect(gateway: Gateway) -> socket.socket:
    parts = urlsplit(gateway.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def exchange(conn: socket.socket, request: bytes) -> bytes:
    """Send a request without a body and read its whole answer (Content-Length), leaving the connection open."""
    conn.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(65536)
        assert chunk, f"closed before an answer: {answer!r}"
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length"))
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def is_open(conn: socket.socket) -> bool:
    """The server has neither closed nor written to the connection (looked at without waiting)."""
    return not select.select([conn], [], [], 0)[0]


def closed_after(conn: socket.socket, since: float, within: float, trickle: bytes = b"", every: float = 0.25) -> float:
    """Seconds from `since` until the server closes `conn` (end of stream or reset), sending `trickle` every `every`
    seconds meanwhile; fails if it is still open `within` seconds after `since`."""
    while (now := time.monotonic()) - since < within:
        try:
            if select.select([conn], [], [], every)[0]:
                if conn.recv(65536) == b"":
                    return time.monotonic() - since
            elif trickle:
                conn.sendall(trickle)
        except OSError:  # reset: closed with our trickle unread
            return time.monotonic() - since
    raise AssertionError(f"still open {now - since:.1f} s after it started")


def gone(conn: socket.socket, within: float) -> bool:
    """Whether the server closes (or resets) `conn` within `within` seconds, reading whatever it sent meanwhile."""
    try:
        closed_after(conn, time.monotonic(), within)
    except AssertionError:
        return False
    return True


def closed_count(gateway: Gateway, reason: str) -> float:
    with urllib.request.urlopen(gateway.metrics_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    series = f'commune_gateway_connections_closed_total{{reason="{reason}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))


def test_headers_that_never_end_are_cut_at_the_deadline_and_others_are_served(site: Site) -> None:
    """GATEWAY_HEADER_TIMEOUT_S=3: a connection that sends nothing, one that sends a request line and then a byte every
    quarter second, and a kept-alive one that starts its next request after an answer are each closed about 3 s
    after opening (or after that answer), while a normal request on another connection gets its 202. Before: no
    deadline (the audit found 200 such connections all open after 90 s, a silent one after 100 s)."""
    deadline = 3.0
    gateway = site.start("slow-headers", GATEWAY_HEADER_TIMEOUT_S=str(deadline), GATEWAY_KEEPALIVE_TIMEOUT_S="1")
    opened = time.monotonic()
    silent, slow = connect(gateway), connect(gateway)
    slow.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")

    accepted = post(gateway, orjson.dumps(canonical_dossier("slow-" + uuid.uuid4().hex[:10])))
    assert accepted.status_code == 202, accepted.text
    assert is_open(silent) and is_open(slow), "closed before the deadline"

    assert closed_after(slow, opened, deadline + MARGIN_S, trickle=b"X") >= deadline - 0.5
    assert closed_after(silent, opened, deadline + MARGIN_S) >= deadline - 0.5

    kept = connect(gateway)
    assert exchange(kept, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    answered = time.monotonic()
    kept.sendall(b"GET /readyz HTTP/1.1\r\n")  # before the 1 s keep-alive timeout: the header deadline is what cuts
    assert closed_after(kept, answered, deadline + MARGIN_S, trickle=b"X") >= deadline - 0.5
    assert closed_count(gateway, "header_timeout") == 3


def test_a_body_trickled_below_the_minimum_rate_is_cut_and_a_slow_one_above_it_is_not(site: Site) -> None:
    """GATEWAY_BODY_TIMEOUT_S=2, GATEWAY_BODY_MIN_BYTES_PER_S=1024: a body of 4 KiB sent 8 bytes every quarter second
    is cut about 2 s after its headers; the same size sent 1 KiB every 0.8 s (2.4 s in all, past the 2 s but above
    the rate) gets its 202. Before: the trickle was read for as long as it lasted."""
    gateway = site.start("slow-body", GATEWAY_BODY_TIMEOUT_S="2", GATEWAY_BODY_MIN_BYTES_PER_S="1024")
    body = orjson.dumps(canonical_dossier("trickle-" + uuid.uuid4().hex[:10])).ljust(4096)
    head = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: "
            + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))

    trickled = connect(gateway)
    trickled.sendall(head)
    started = time.monotonic()
    assert closed_after(trickled, started, 2 + MARGIN_S, trickle=b"        ") >= 1.5

    steady = connect(gateway)
    steady.sendall(head)
    for offset in range(0, len(body), 1024):
        assert is_open(steady)
        steady.sendall(body[offset:offset + 1024])
        select.select([steady], [], [], 0.8)  # a pause the allowance covers (wakes early only if the server writes)
    answer = steady.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
    assert closed_count(gateway, "body_too_slow") == 1


def test_past_the_cap_the_longest_waiting_connection_gives_way_and_busy_ones_refuse(site: Site) -> None:
    """GATEWAY_MAX_CONNECTIONS=3. Three connections waiting for headers (one kept alive after an answer, two with
    half a request line): a fourth that sends its request at once is served and the one that waited longest is
    closed (`evicted`), so a flood that sends nothing cannot keep a prompt client or a probe out (review: at the cap
    every new connection was refused, `/healthz` included). Three connections each in the middle of a request's
    body: a fourth is answered 503 `too_many_connections` with Retry-After, unread, and closed at once."""
    gateway = site.start("cap", GATEWAY_MAX_CONNECTIONS="3", GATEWAY_HEADER_TIMEOUT_S="60",
                         GATEWAY_KEEPALIVE_TIMEOUT_S="60", GATEWAY_BODY_TIMEOUT_S="60")

    def kept_alive() -> socket.socket | None:
        """A connection answered 200 and left open (None when refused: the probes' last one may not be gone yet)."""
        conn = connect(gateway)
        try:
            if exchange(conn, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 "):
                return conn
        except (OSError, AssertionError):
            pass
        conn.close()
        return None

    oldest = eventually(kept_alive, what="a kept-alive connection")
    halves = []
    for _ in range(2):
        conn = connect(gateway)
        conn.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        halves.append(conn)
    prompts = []
    for _ in range(3):  # the first may take the place of a probe's connection the server has not seen go yet
        prompts.append(eventually(kept_alive, what="a prompt client served at the cap"))
        if gone(oldest, 0.5):
            break
    else:
        raise AssertionError("the connection that waited longest was never evicted")
    assert all(is_open(conn) for conn in halves)  # the younger ones wait on
    assert eventually(lambda: closed_count(gateway, "evicted") >= 1, what="the eviction counted")
    for conn in (*halves, *prompts):
        conn.close()

    def in_body() -> socket.socket:
        """A connection in the middle of a request's body (10 of 1,000 bytes sent, the app reading it)."""
        conn = connect(gateway)
        conn.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nx-api-key: " + API_KEY.encode()
                     + b"\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[{\"a\": 1, ")
        return conn

    busy = [in_body() for _ in range(3)]
    assert all(is_open(conn) for conn in busy)

    def refused() -> bytes | None:
        extra = connect(gateway)
        answer = b""
        try:
            while chunk := extra.recv(65536):
                answer += chunk
        except OSError:
            pass
        extra.close()
        return answer if answer.startswith(b"HTTP/1.1 503 ") else None  # else a closing connection's place, again

    answer = eventually(refused, what="a connection past the cap refused")
    assert b"retry-after: 1" in answer and b'"too_many_connections"' in answer
    assert all(is_open(conn) for conn in busy)
    for conn in busy:
        conn.close()
    assert eventually(lambda: closed_count(gateway, "too_many_connections") >= 1, what="the refusal counted")


def test_a_client_that_never_reads_its_answers_is_cut_at_the_send_deadline(site: Site) -> None:
    """GATEWAY_SEND_TIMEOUT_S=2: a client that pipelines 300 requests for /openapi.json (~8 MB of answers) and reads
    none has its connection cut about 2 s after the gateway's writes stall, while a normal request on another
    connection gets its 202. Before (review): no deadline while the gateway sends, and a close waited for the unread
    answers to drain, so 512 such clients held every slot for ever."""
    gateway = site.start("send", GATEWAY_SEND_TIMEOUT_S="2", GATEWAY_HEADER_TIMEOUT_S="60",
                         GATEWAY_KEEPALIVE_TIMEOUT_S="60")
    parts = urlsplit(gateway.url)
    reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((parts.hostname, parts.port))
    reader.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 300)
    started = time.monotonic()
    assert post(gateway, orjson.dumps(canonical_dossier("send-" + uuid.uuid4().hex[:10]))).status_code == 202
    assert eventually(lambda: closed_count(gateway, "send_too_slow") >= 1, timeout=30,
                      what="the stalled connection cut")
    assert time.monotonic() - started < 30
    reader.close()


@pytest.mark.unit
def test_the_keepalive_timeout_is_at_most_the_header_deadline() -> None:
    """Both run from a response: a longer keep-alive would never apply (the header deadline closes first)."""
    assert GatewaySettings().keepalive_timeout_s <= GatewaySettings().header_timeout_s
    with pytest.raises(ValueError, match="KEEPALIVE"):
        GatewaySettings(keepalive_timeout_s=30, header_timeout_s=10)
