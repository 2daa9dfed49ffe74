"""A TLS connection of aiokafka closes at once, as the Java client's does, not when the broker next reads.

aiokafka closes a connection with `transport.close()` and its clients' `stop()` wait
until every connection is closed. On a TLS connection that is asyncio's graceful
shutdown: send our close_notify, then wait up to 30 s (asyncio's and uvloop's
`ssl_shutdown_timeout`) for the broker's. The broker mutes a connection while a request
of it is in flight, so a consumer stopped during a fetch long-poll waits the rest of
`fetch_max_wait_ms` (500 ms by default) for the broker's close_notify: on PLAINTEXT the
same stop takes about a millisecond. Under uvloop (every service process) the wait
sometimes ran the whole 30 s (measured: `bench/secure_cost.py`, ADR 0014).

`apply` makes a closing TLS connection abort its transport once our own close_notify
has had `GRACE_S` to leave, whether or not the broker's has arrived. That is what
Apache Kafka's Java client does (`SslTransportLayer.close` sends close_notify, flushes
and closes the socket without reading the peer's). Nothing of TLS itself changes:
protocol version, certificate checks, SASL and encryption are as before; a request
still in flight on a connection being closed has already failed in aiokafka
(`KafkaConnectionError`) before the transport is closed.
`tests/common/test_tls_close.py` fails when the pinned aiokafka changes.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from services.common.aiokafka_compat import pinned

GRACE_S = 0.02
"""How long the broker's close_notify is waited for before the socket is closed (loopback needs ~1 ms)."""

_conn: Any = importlib.import_module("aiokafka.conn")  # no stub: typings/aiokafka has no conn module
_applied: list[bool] = []


def _abort_unless_closed(transport: asyncio.WriteTransport, closed: asyncio.Future[None]) -> None:
    """Close the socket now if the graceful shutdown has not ended (the broker's close_notify not read)."""
    if not closed.done():
        transport.abort()


def apply() -> None:
    """Make every aiokafka TLS connection of this process close within `GRACE_S` (idempotent)."""
    if _applied:
        return
    pinned("services/common/tls_close.py")
    original = _conn.AIOKafkaConnection.close

    def close(self: Any, reason: Any = None, exc: Any = None) -> Any:
        writer = self._writer
        closed = original(self, reason=reason, exc=exc)
        if writer is not None and self._security_protocol in ("SSL", "SASL_SSL") and closed is not None:
            self._loop.call_later(GRACE_S, _abort_unless_closed, writer.transport, closed)
        return closed

    close.__doc__ = original.__doc__
    _conn.AIOKafkaConnection.close = close
    _applied.append(True)
