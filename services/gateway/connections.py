"""The gateway's HTTP connections: deadlines for slow clients and a cap on open connections.

uvicorn's h11 server (httptools is not installed) closes a kept-alive connection left idle after a response
(`timeout_keep_alive`), and nothing else: a connection that sends nothing, its headers a byte at a time or its body
a trickle is held as long as the client likes, and so is any number of them, on file descriptors the Kafka clients
need too. Its `limit_concurrency` does not help: it is checked once a request's headers are complete, and answers
503 without closing anything. `guarded(limits)` is its H11Protocol with:

- a header deadline: the request line and headers must arrive within `header_timeout_s` of the connection opening,
  or of the previous response on a kept-alive connection;
- a body rate: once the headers are in, the body may take `body_timeout_s` plus one second per
  `body_min_bytes_per_s` bytes received, and its bytes may pause `body_timeout_s` at most: time earned by bytes sent
  early is for a slow link, not for silence (1 MiB sent at once bought 276 s of it, on a slot the cap cannot evict;
  audit of 2026-12-06). While the gateway itself is not reading (its buffer full, or a client waiting for
  `100 Continue`) the client's clock stops;
- a send deadline: an answer the client does not read (the gateway's writes held back for `send_timeout_s` in a
  row: a client that pipelines requests, or asks for a large answer, and never reads) ends the connection;
- a chunk allowance: a chunked body cut into a great many tiny chunks is malformed (`services.gateway.chunks`);
- a cap: a connection past `max_connections` open takes the place of the one that has waited longest for a
  request's headers (a slow client's, or an idle kept-alive one: closed as `evicted`); when every open connection
  is busy with a request, it is answered 503 with Retry-After, unread, and closed. So a flood of connections that
  send nothing cannot keep a prompt client (an integrator, a health probe) out: its headers arrive within
  milliseconds, long before hundreds of newer connections make it the oldest waiting one.

Over TLS the connection is guarded from its first byte, not from the end of its handshake
(`services.gateway.handshakes`).

An offender's connection is aborted (closed at once, whatever is still unsent dropped, and over TLS without waiting
up to 30 s for the peer's close_notify: a close would keep the slot meanwhile; its request, if the app is reading it,
sees the client gone) and counted in `commune_gateway_connections_closed_total{reason}`; no other connection
notices.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import h11
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from services.gateway.api import error
from services.gateway.chunks import ChunkCountingConnection
from services.gateway.flow import PausedClock
from services.gateway.telemetry import CONNECTIONS_CLOSED, CONNECTIONS_OPEN

if TYPE_CHECKING:  # for types only: handshakes builds on this module
    from services.gateway.handshakes import TlsHandshake

log = structlog.get_logger("gateway")

Reason = Literal["header_timeout", "handshake_timeout", "body_too_slow", "send_too_slow", "too_many_connections",
                 "evicted"]
Waiting = Literal["headers", "body"] | None
"""What the connection waits for from the client: a request's headers, the rest of its body, or nothing."""

_BUSY = json.dumps(error("too_many_connections", "the gateway has too many open connections; retry later")).encode()
TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"retry-after: 1\r\nconnection: close\r\n\r\n" % len(_BUSY)) + _BUSY
"""Written to a connection past the cap before any of its bytes are read."""


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    body_min_bytes_per_s: int
    max_connections: int
    send_timeout_s: float = 20.0


TURNS = itertools.count()
"""Orders when connections and TLS handshakes began to wait: `admit` evicts the earliest."""


class GuardedH11Protocol(H11Protocol):
    """One connection of the gateway's server (see the module's docstring); `limits` is set by `guarded`."""

    limits: ClassVar[ConnectionLimits]
    handshaking: ClassVar[set[TlsHandshake]]
    """This server's TLS connections whose handshake is under way (`guarded_tls`): they count against the cap."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = ChunkCountingConnection(config.h11_max_incomplete_event_size)  # uvicorn's: no byte read yet
        self.handshake: TlsHandshake | None = None
        """Over TLS, the connection's TLS layer: it admitted the connection when its TCP connection opened."""
        self._clock: PausedClock | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting: tuple[Waiting, object] = (None, None)
        self._waiting_since = 0
        """When it began to wait for headers, as a sequence number: the loop's clock (uvloop: libuv's) ticks in
        milliseconds, too coarse to order a kept-alive connection's answer and the connections opened just after."""
        self._stalled: asyncio.TimerHandle | None = None
        self._body_since = 0.0
        self._body_bytes = 0
        self._body_paused_s = 0.0
        self._body_heard = (0.0, 0.0)
        """When the body's last bytes arrived, and how long reading had been paused by then."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        CONNECTIONS_OPEN.inc()
        self._clock = PausedClock(transport, self.loop.time)
        self.flow = self._clock
        if self.handshake is not None:  # admitted when its TCP connection opened; its TLS handshake is done now
            self.handshake.completed()
        elif not self.admit(self.connections, self):
            CONNECTIONS_CLOSED.labels("too_many_connections").inc()  # not logged: refusals cost nothing to cause
            transport.write(TOO_MANY)
            transport.close()
            return
        self._follow()

    @classmethod
    def admit(cls, connections: set[Any], newcomer: object) -> bool:
        """Room for `newcomer`, already counted among `connections` (uvicorn's, of this server) or the TLS handshakes
        under way: past the cap the connection that has waited longest for a request's headers, or for the end of its
        handshake, gives way (`evicted`). False when none waits: every connection is busy with a request."""
        if len(connections) + len(cls.handshaking) <= cls.limits.max_connections:
            return True
        waiting: list[GuardedH11Protocol | TlsHandshake] = [
            c for c in connections if isinstance(c, GuardedH11Protocol) and c is not newcomer
            and c._waiting[0] == "headers" and not c.transport.is_closing()]
        waiting += [h for h in cls.handshaking if h is not newcomer]
        victim = min(waiting, key=lambda c: c._waiting_since, default=None)
        if victim is None:
            return False
        victim.evict()
        return True

    def evict(self) -> None:
        self._close("evicted")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        CONNECTIONS_OPEN.dec()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client ended its side (`shutdown(SHUT_WR)`: `nc -N`, some HTTP/1.0 clients) after a whole request: its
        answer is still written, then the connection closed. uvicorn closed it at once, the request marked
        disconnected: its events were published and the client told nothing (audit). EOF anywhere else (between
        requests, mid-request, after pipelined requests: the first is answered, the others neither answered nor
        published) closes it, as before; so does one over TLS, whose layer cannot stay half-open (it
        would warn of the True asked for). (asyncio's protocol: True keeps the transport open.)"""
        cycle, tls = self.cycle, self.transport.get_extra_info("sslcontext") is not None
        whole = self.conn.their_state in (h11.DONE, h11.MUST_CLOSE)  # MUST_CLOSE: HTTP/1.0, `Connection: close`
        if cycle is not None and not cycle.response_complete and whole and not tls:
            cycle.keep_alive = False
            return True
        return None

    def data_received(self, data: bytes) -> None:
        if self._waiting[0] == "body":
            self._body_bytes += len(data)
            self._body_heard = (self.loop.time(), self._clock.paused_s() if self._clock is not None else 0.0)
        super().data_received(data)
        self._follow()

    def pause_writing(self) -> None:
        """The transport's buffer is full: the client is not reading what the gateway writes. It has
        `send_timeout_s` to start again."""
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.limits.send_timeout_s, self._close, "send_too_slow")

    def resume_writing(self) -> None:
        super().resume_writing()
        self._unstall()
        if self.transport.is_closing():  # still unsent data to go, below the high-water mark: a deadline for it
            self._closing()

    def _closing(self) -> None:
        """The connection is closing gently (`Connection: close`, keep-alive ended) and waits until the client has
        read what is still unsent: it has `send_timeout_s` for that, whatever is left (below the buffer's high-water
        mark no `pause_writing` comes)."""
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.limits.send_timeout_s, self._close, "send_too_slow")

    def _unstall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def send_400_response(self, msg: str) -> None:
        super().send_400_response(msg)  # a malformed request (a bad chunk): uvicorn answers 400 and closes
        if self.cycle is not None:  # the route still running answers into nothing, not into h11 (which raised: one
            self.cycle.disconnected = True  # ERROR line a request, "ASGI callable returned without completing")
            self.cycle.message_event.set()

    def _follow(self) -> None:
        """Arm the deadline of what the connection now waits for from the client, when that changed: the headers
        (at the opening, or once a response is complete and the next request may come), or a request's body."""
        if self.transport.is_closing():
            self._disarm()
            self._closing()
            return
        state = self.conn.their_state
        waiting: Waiting = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if (waiting, self.cycle) == self._waiting:
            return
        self._disarm()
        self._waiting = (waiting, self.cycle)
        if waiting == "headers":
            self._waiting_since = next(TURNS)
            self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._close, "header_timeout")
        elif waiting == "body":
            self._start_body_clock()

    def _start_body_clock(self) -> None:
        self._body_since, self._body_bytes = self.loop.time(), 0
        self._body_paused_s = self._clock.paused_s() if self._clock is not None else 0.0
        self._body_heard = (self._body_since, self._body_paused_s)
        self._deadline = self.loop.call_later(self.limits.body_timeout_s, self._check_body)

    def _check_body(self) -> None:
        """Cut a body behind its allowance, or silent past `body_timeout_s`; else look again when it would be."""
        self._deadline = None
        if self.cycle is not None and self.cycle.waiting_for_100_continue:  # the app has not asked for it yet
            self._start_body_clock()
            return
        now, paused_s = self.loop.time(), self._clock.paused_s() if self._clock is not None else 0.0
        allowed = self.limits.body_timeout_s + self._body_bytes / self.limits.body_min_bytes_per_s
        left = allowed + paused_s - self._body_paused_s - (now - self._body_since)
        heard_at, paused_then = self._body_heard
        left = min(left, self.limits.body_timeout_s + paused_s - paused_then - (now - heard_at))
        if left <= 0 and not (self._clock is not None and self._clock.read_paused):
            self._close("body_too_slow")
            return
        self._deadline = self.loop.call_later(max(left, 0.1), self._check_body)

    def _close(self, reason: Reason) -> None:
        self._disarm()  # the timer that fired, or (an eviction) the one still armed
        self._unstall()
        if self.transport.is_closing() and reason != "send_too_slow":
            self._abort()  # a gentle close already under way, waiting on the client: it ends now
            return
        CONNECTIONS_CLOSED.labels(reason).inc()
        if reason != "evicted":  # an eviction, like a refusal, costs a flood nothing to cause: counted only
            log.info("gateway.connection_closed", reason=reason, peer=self.client[0] if self.client else "")
        self._abort()

    def _abort(self) -> None:
        """Close the connection at once. Over TLS the TCP connection underneath too: asyncio's TLS transport closed
        twice (a gentle close, then uvicorn's shutdown) forgets its protocol and ignores `abort` (review: a client
        that never answered close_notify held the connection, and the gateway's stop, 30 s)."""
        self.transport.abort()
        if self.handshake is not None and self.handshake.raw is not None:
            self.handshake.raw.abort()

    def shutdown(self) -> None:
        """The server stops: uvicorn's, but a TLS connection closing already is not closed again (asyncio's TLS
        transport would forget its protocol): cut when it only waits for the client's close_notify, else left to
        finish sending within its send deadline."""
        if self.handshake is None or not self.transport.is_closing():
            super().shutdown()
            return
        raw = self.handshake.raw
        if self.transport.get_write_buffer_size() == 0 and (raw is None or raw.get_write_buffer_size() == 0):
            self._abort()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def guarded(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for these limits, plain HTTP."""

    class Guarded(GuardedH11Protocol):
        pass

    Guarded.limits = limits
    Guarded.handshaking = set()
    return Guarded
