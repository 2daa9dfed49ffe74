"""A body's bytes may pause `GATEWAY_BODY_TIMEOUT_S` at most, whatever time its earlier bytes earned (on the real
server: the gateway's `server_config`, in process)."""

from __future__ import annotations

import select
import socket
import time

import orjson
import pytest

from services.gateway.settings import GatewaySettings
from services.gateway.telemetry import CONNECTIONS_CLOSED
from tests.gateway.asgi import API_KEY
from tests.gateway.conftest import serving
from tests.kafkatools import free_port
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


def head(length: int) -> bytes:
    return (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: "
            + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % length)


def closed_within(conn: socket.socket, wait_s: float) -> bool:
    """Whether the gateway closed `conn` (end of stream or reset) within `wait_s`; an answer is read past."""
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([conn], [], [], left)[0]:
            return False
        try:
            if conn.recv(65536) == b"":
                return True
        except ConnectionResetError:
            return True
    return False


def test_credit_earned_by_bytes_sent_at_once_is_not_spent_as_silence() -> None:
    """GATEWAY_BODY_TIMEOUT_S=1, GATEWAY_BODY_MIN_BYTES_PER_S=1024: 256 KiB of a declared 1 MiB sent at once earn
    257 s by the rate, yet the connection is cut (`body_too_slow`) once it has been silent for about 1 s. Before:
    it was held the 257 s, on a slot the connection cap never evicts (audit: 1 MiB each held 512 slots 276 s)."""
    cut = CONNECTIONS_CLOSED.labels("body_too_slow")
    before = cut._value.get()
    settings = GatewaySettings(port=free_port(), body_timeout_s=1.0, body_min_bytes_per_s=1024)
    with serving(settings) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head(1024 * 1024) + b" " * (256 * 1024))
        assert closed_within(conn, 30.0), "the silent connection was still open after 30 s"
    assert cut._value.get() - before == 1


def test_a_body_whose_pauses_stay_within_the_timeout_is_read_to_its_end() -> None:
    """GATEWAY_BODY_TIMEOUT_S=3: a body sent in five parts a fifth of a second apart (its rate far below the minimum
    at first, no pause near the timeout) gets its 202."""
    body = orjson.dumps(canonical_dossier("paused-1")).ljust(5 * 200)
    settings = GatewaySettings(port=free_port(), body_timeout_s=3.0, body_min_bytes_per_s=1024 * 1024)
    with serving(settings) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head(len(body)))
        for offset in range(0, len(body), 200):
            time.sleep(0.2)
            conn.sendall(body[offset:offset + 200])
        assert conn.recv(65536).startswith(b"HTTP/1.1 202 ")
