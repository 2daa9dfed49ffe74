"""A TCP proxy on loopback that a chaos row can cut and heal: a network partition between one worker and the broker.

`cut()` in the default "blackhole" mode is a dropped route: every connection stays open and nothing crosses in
either direction, new connections are accepted and get nowhere (their upstream is dialled only at the heal), and
nothing is refused or reset, so the clients meet their request and session timeouts rather than errors. What a
side writes meanwhile waits, as TCP retransmits it, and crosses once `heal()` opens the route again: a zombie's
request sent into the partition reaches the broker late, as it would. In "reset" mode every connection is reset
(RST) and new ones are reset as they come, as a firewall rejecting the route would. `close()` ends every connection
and task the proxy started.

The proxy runs in the event loop of its owner (the chaos row's): nothing else blocks that loop for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

CutMode = Literal["blackhole", "reset"]
CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN (SO_LINGER 0): the peer's next read or write fails at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class NetProxy:
    """Forwards 127.0.0.1:`port` (0: a free one) to `target_host`:`target_port` until cut, and again once healed."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.mode: CutMode | None = None
        """How the route is cut now (None: it is open)."""
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        """Connections accepted so far (a test's evidence that the clients dialled through the proxy)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self, mode: CutMode = "blackhole") -> None:
        """Cut the route: from now on no byte crosses (blackhole), or every connection is reset, and each new one as it
        comes (reset)."""
        self.mode = mode
        if mode == "blackhole":
            self._open.clear()
            return
        for writer in list(self._writers):
            _reset(writer)
        for task in list(self._tasks):
            task.cancel()

    def heal(self) -> None:
        """Open the route again: held bytes and connections go through."""
        self.mode = None
        self._open.set()

    async def close(self) -> None:
        """Stop listening, end every connection and wait for every task the proxy started."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each connection in a task of the proxy's own: one the server's handler ran in, cancelled by `close`, had
        asyncio 3.11 log an "Exception in callback" (its done callback asks a cancelled task for its exception)."""
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.mode == "reset":
                _reset(writer)
                return
            await self._open.wait()  # a blackhole: the connection is accepted, its upstream dialled only at the heal
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            await asyncio.gather(self._pump(reader, upstream), self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass  # a side went away (or was reset): the other is closed below
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    if self.mode == "reset":
                        w.transport.abort()
                    else:
                        w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction while the route is open; the end of the stream ends the other side's writing."""
        while True:
            await self._open.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            await self._open.wait()  # cut while reading: these bytes wait for the heal too
            if self.mode == "reset" or writer.is_closing():
                return
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()
