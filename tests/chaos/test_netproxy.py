"""The chaos rows' network partition (`tests/chaos/netproxy.py`) against a local echo server: a cut stops every byte,
a heal lets them through, a reset cut resets, and closing leaves no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.chaos.netproxy import NetProxy

pytestmark = pytest.mark.unit
QUIET_S = 0.5
"""How long a cut route must stay silent: the echo crosses loopback twice in well under a millisecond."""


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[NetProxy]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = NetProxy("127.0.0.1", echo.sockets[0].getsockname()[1])
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
        echo.close()
        await echo.wait_closed()


async def _connect(proxy: NetProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout=5)


async def _silent(reader: asyncio.StreamReader) -> bool:
    """Nothing arrives within `QUIET_S` (and the connection is not closed either)."""
    try:
        got = await asyncio.wait_for(reader.read(1024), timeout=QUIET_S)
    except TimeoutError:
        return True
    raise AssertionError(f"read {got!r} through a cut route")


async def test_a_blackhole_cut_holds_every_byte_until_the_heal(proxy: NetProxy) -> None:
    """Open: bytes cross both ways. Cut: neither an open connection nor a new one gets a byte through, and neither is
    closed. Healed: what was written meanwhile crosses, and new bytes flow again on both connections."""
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"before") == b"before"
    proxy.cut()
    writer.write(b"during")
    late_reader, late_writer = await _connect(proxy)  # accepted, not refused, as a dropped route's SYN is not
    late_writer.write(b"late")
    assert await _silent(reader) and await _silent(late_reader)
    proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(6), timeout=5) == b"during"
    assert await asyncio.wait_for(late_reader.readexactly(4), timeout=5) == b"late"
    assert await _round_trip(reader, writer, b"after") == b"after"
    assert proxy.connections == 2
    for w in (writer, late_writer):
        w.close()


async def test_a_reset_cut_resets_open_connections_and_new_ones(proxy: NetProxy) -> None:
    """Reset: an open connection and one made during the cut end at once (reset or closed, never silent); healed,
    a new connection works."""
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"x") == b"x"
    proxy.cut("reset")
    for r, w in (reader, writer), await _connect(proxy):
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            w.write(b"y")
            await w.drain()
            await asyncio.wait_for(r.readexactly(1), timeout=5)
        w.close()
    proxy.heal()
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"z") == b"z"
    writer.close()


async def test_close_leaves_no_task_and_no_connection_open() -> None:
    """Closing a proxy cut with connections held in it ends them, and every task it started: none is left running,
    and asyncio reports nothing (a cancelled server handler made it log "Exception in callback")."""
    loop, reported = asyncio.get_running_loop(), list[dict[str, object]]()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = NetProxy("127.0.0.1", echo.sockets[0].getsockname()[1])
    await proxy.start()
    before = asyncio.all_tasks()
    opened = [await _connect(proxy) for _ in range(3)]
    assert await _round_trip(*opened[0], b"a") == b"a"
    proxy.cut()
    opened.append(await _connect(proxy))  # held, its upstream not dialled
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks() - before) >= 4
    await asyncio.wait_for(proxy.close(), timeout=5)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set(), "tasks left running after close"
    for reader, writer in opened:
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed by the proxy
        writer.close()
    echo.close()
    await echo.wait_closed()
    loop.set_exception_handler(None)
    assert not reported, reported
