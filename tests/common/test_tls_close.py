"""services/common/tls_close.py: a closing TLS connection of aiokafka aborts its socket after the grace period."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import aiokafka
import pytest

from services.common import aiokafka_compat, tls_close

pytestmark = pytest.mark.unit

conn_module: Any = importlib.import_module("aiokafka.conn")


class FakeTransport:
    """The part of a transport aiokafka's close and the work-around use."""

    def __init__(self) -> None:
        self.closed = self.aborted = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class FakeWriter:
    def __init__(self) -> None:
        self.transport = FakeTransport()

    def close(self) -> None:
        self.transport.close()


def _open_connection(protocol: str) -> tuple[Any, FakeTransport, asyncio.Future[None]]:
    """An AIOKafkaConnection as `connect` leaves it, with a fake transport and no broker."""
    conn = conn_module.AIOKafkaConnection("127.0.0.1", 9, security_protocol=protocol,
                                          ssl_context=object() if "SSL" in protocol else None)
    writer = FakeWriter()
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    conn._writer, conn._reader, conn._closed_fut = writer, object(), closed
    conn._read_task = asyncio.get_running_loop().create_future()
    return conn, writer.transport, closed


def test_installed_aiokafka_is_the_pinned_version() -> None:
    """Fails when aiokafka is upgraded: re-read aiokafka/conn.py's close, then update PINNED_VERSION."""
    assert aiokafka.__version__ == aiokafka_compat.PINNED_VERSION


async def test_a_tls_connection_still_closing_after_the_grace_is_aborted() -> None:
    """The broker's close_notify not read within GRACE_S: the transport is closed gracefully, then aborted."""
    tls_close.apply()
    conn, transport, _closed = _open_connection("SASL_SSL")
    conn.close()
    assert transport.closed and not transport.aborted  # our close_notify goes first
    await asyncio.sleep(tls_close.GRACE_S * 5)
    assert transport.aborted


async def test_a_tls_connection_closed_in_time_is_left_alone() -> None:
    """The broker's close_notify read within the grace (connection_lost came): nothing is aborted."""
    tls_close.apply()
    conn, transport, closed = _open_connection("SSL")
    conn.close()
    closed.set_result(None)
    await asyncio.sleep(tls_close.GRACE_S * 5)
    assert transport.closed and not transport.aborted


async def test_a_plaintext_connection_closes_as_aiokafka_closes_it() -> None:
    """PLAINTEXT has no closing handshake to wait for: the work-around leaves it as it is."""
    tls_close.apply()
    conn, transport, _closed = _open_connection("PLAINTEXT")
    conn.close()
    await asyncio.sleep(tls_close.GRACE_S * 5)
    assert transport.closed and not transport.aborted
