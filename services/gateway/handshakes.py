"""The gateway's TLS connections, guarded from their TCP connection's opening, not from the end of the handshake.

`guarded_tls` wraps the H11 protocol of `services.gateway.connections` in asyncio's own TLS protocol (`TlsHandshake`,
the server socket itself is plain TCP), so a handshake counts against the cap while it runs, is the first thing
evicted when it has waited longest, and must complete within `header_timeout_s` (`handshake_timeout`; then the
request's headers have their own deadline). Left to asyncio (uvicorn's `ssl_certfile`), a handshake that never came
was held 60 s and counted nowhere: a client opening a few hundred such connections a second ran the process out of
file descriptors, the Kafka clients' with them.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from asyncio import sslproto
from typing import Any, ClassVar, cast

import structlog
from uvicorn.config import Config
from uvicorn.server import ServerState

from services.gateway.connections import TURNS, ConnectionLimits, GuardedH11Protocol, guarded
from services.gateway.telemetry import CONNECTIONS_CLOSED, CONNECTIONS_OPEN

log = structlog.get_logger("gateway")

HANDSHAKE_BACKSTOP_S = 5.0
"""asyncio's own handshake deadline comes this long after `TlsHandshake`'s, in case that one never fires."""


class TlsHandshake(sslproto.SSLProtocol):
    """One TLS connection of the gateway's server: asyncio's TLS protocol over its TCP connection, around its H11
    protocol, guarded from the TCP connection's opening (see the module's docstring); `guarded` and `context` are set
    by `guarded_tls`."""

    guarded: ClassVar[type[GuardedH11Protocol]]
    context: ClassVar[ssl.SSLContext]
    max_size = 32 * 1024
    """The read buffer asyncio allocates (zero-filled) for every accepted connection: 256 KiB by default, 128 MiB for
    512 silent connections (review); a TLS record is at most 16 KiB."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = _loop or asyncio.get_event_loop()
        self.app = self.guarded(config, server_state, app_state, _loop)
        self.app.handshake = self
        limits = self.guarded.limits
        # typeshed asks for a waiter (asyncio passes None too) and whole numbers of seconds; a gentle close waits for
        # the client's close_notify as long as a client not reading its answer is given (asyncio's default: 30 s)
        super().__init__(loop, self.app, self.context, None, server_side=True,  # type: ignore[arg-type]
                         ssl_handshake_timeout=math.ceil(limits.header_timeout_s + HANDSHAKE_BACKSTOP_S),
                         ssl_shutdown_timeout=math.ceil(limits.send_timeout_s))
        self.raw: asyncio.Transport | None = None
        self._waiting_since = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guarded = self.guarded
        self.raw = cast(asyncio.Transport, transport)  # a TCP connection's (uvloop's is no asyncio.Transport subclass)
        guarded.handshaking.add(self)
        CONNECTIONS_OPEN.inc()
        self._waiting_since = next(TURNS)
        self._deadline = self._loop.call_later(guarded.limits.header_timeout_s, self._expire)
        super().connection_made(transport)
        if not guarded.admit(self.app.connections, self):
            CONNECTIONS_CLOSED.labels("too_many_connections").inc()  # no 503 before a handshake: closed unanswered
            self._cut()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._settle()
        super().connection_lost(exc)

    def completed(self) -> None:
        """The handshake is done: the H11 protocol has the connection (and counts it) from now on."""
        self._settle()

    def evict(self) -> None:
        CONNECTIONS_CLOSED.labels("evicted").inc()
        self._cut()

    def _expire(self) -> None:
        self._deadline = None
        if self in self.guarded.handshaking:
            CONNECTIONS_CLOSED.labels("handshake_timeout").inc()
            peer = self.raw.get_extra_info("peername") if self.raw is not None else None
            log.info("gateway.connection_closed", reason="handshake_timeout", peer=peer[0] if peer else "")
            self._cut()

    def _cut(self) -> None:
        """Close the TCP connection at once; its slot is free now (its `connection_lost` comes on a later turn)."""
        self._settle()
        if self.raw is not None:
            self.raw.abort()

    def _settle(self) -> None:
        if self in self.guarded.handshaking:
            self.guarded.handshaking.discard(self)
            CONNECTIONS_OPEN.dec()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def guarded_tls(limits: ConnectionLimits, context: ssl.SSLContext) -> type[TlsHandshake]:
    """The protocol class to give uvicorn (`Config(http=...)`, without `ssl_certfile`: the listening socket stays
    plain TCP) for these limits over TLS with `context`."""

    class Guarded(TlsHandshake):
        pass

    Guarded.guarded = guarded(limits)
    Guarded.context = context
    return Guarded


def abort_handshakes(protocol: type[Any]) -> None:
    """At the server's shutdown: close the TLS handshakes still under way (uvicorn knows only finished ones)."""
    if isinstance(protocol, type) and issubclass(protocol, TlsHandshake):
        for handshake in list(protocol.guarded.handshaking):
            handshake._cut()
