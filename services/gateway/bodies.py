"""Reading a request body under a byte limit while it streams (chunked transfer included).

The running count is checked after every chunk, so a body past the limit is refused having read at most
the limit plus one chunk (the server reads 64 KiB at a time), whatever it declares or however long it is.
A body still arriving is held in memory while it is at most `SPILL_BYTES` and all the bodies arriving hold less than
`MEMORY_BYTES` there, else in a temporary file (`Spool`): one refused for its size never sat in memory whole, and
however many uploads are in progress, their bytes in memory stay within the budget. Each kept its first 1 MiB in
memory before: 516 unverified uploads from a few addresses, no credential needed, took the gateway from 92 to 759 MB
(audit of 2026-12-06).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Literal, Protocol

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from services.common.sparse import Sparse
from services.gateway.ratelimit import Budget, Over

log = structlog.get_logger("gateway")
_SPOOL_FAILURES = Sparse()
"""`gateway.body_spool_failed` lines: one per cause every `sparse.EVERY_S` (a full disk fails every large body)."""

SPILL_BYTES = 1024 * 1024
"""One body holds at most this in memory while it arrives."""
MEMORY_BYTES = 8 * 1024 * 1024
"""All the bodies arriving at once hold at most this in memory (`Gateway`'s one budget): the gateway's baseline is
~90 MB of a 100 MB budget (ADR 0013)."""


class TooLarge(Exception):
    """The body passed the limit; `read` is how many bytes had arrived when it was refused."""

    def __init__(self, read: int, limit: int) -> None:
        self.read, self.limit = read, limit
        super().__init__(f"the body passed {limit} bytes (refused after {read})")


class Unadmitted(Exception):
    """A byte budget refused the body (`budget`: the one for signed bodies not yet verified, or the one for bodies
    held until their check, or the disk its spool is on, full; `over`: the limit met): it is not read further."""

    def __init__(self, budget: Literal["unverified", "held", "disk"], over: Over) -> None:
        self.budget, self.over = budget, over
        super().__init__(f"over the {budget} bodies' {over} budget")


class Hasher(Protocol):
    def update(self, chunk: bytes) -> None: ...


class Spool:
    """A body as it arrives: in memory while it is at most `SPILL_BYTES` and `memory`, shared by every body being
    read, has room for it; from then on in a temporary file."""

    def __init__(self, memory: Budget) -> None:
        self._memory = memory
        self._parts: list[bytes] = []
        self._in_memory = 0
        self._file: IO[bytes] | None = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self._forget_parts()
        if self._file is not None:
            with suppress(OSError):  # its buffer's last bytes, which a full disk refuses: the file is dropped anyway
                self._file.close()  # (closed all the same); the failure was answered, or the body read already

    def write(self, chunk: bytes) -> None:
        if self._file is None and self._in_memory + len(chunk) <= SPILL_BYTES and self._memory.take(len(chunk)) is None:
            self._parts.append(chunk)
            self._in_memory += len(chunk)
            return
        with _no_room():
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `__exit__`, with the spool)
                self._file.writelines(self._parts)
                self._forget_parts()
            self._file.write(chunk)

    def read(self) -> bytes:
        """The whole body, loaded (once the spool is closed, it no longer counts against `memory`)."""
        if self._file is None:
            return self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        with _no_room():
            self._file.seek(0)  # (its buffer written first: a body's last small chunk fails here, on a full disk)
            return self._file.read()

    def _forget_parts(self) -> None:
        self._parts.clear()
        self._memory.release(self._in_memory)
        self._in_memory = 0


@contextmanager
def _no_room() -> Iterator[None]:
    """A spool's file failing (the temporary folder full or unwritable) is no bug: the gateway has no room for the
    body, answered 503 busy, retry later (before: 500 internal_error, alerted as a bug, logged `OSError` and a place),
    and the folder and cause logged."""
    try:
        yield
    except OSError as exc:
        if (records := _SPOOL_FAILURES.due(exc.errno)) is not None:
            log.error("gateway.body_spool_failed", folder=tempfile.gettempdir(), reason=exc.strerror or "",
                      records=records, effect="answered 503 busy")
        raise Unadmitted("disk", "total") from exc


async def received(receive: Receive) -> AsyncIterator[bytes]:
    """A request's body, chunk by chunk, from the ASGI `receive`; raises ClientDisconnect if the client goes away.
    No chunk is kept while the next is awaited: Starlette's `Request.stream` keeps the last one, up to a read's
    256 KiB for as long as an upload is silent."""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        more = bool(message.get("more_body", False))
        chunk: bytes = message.get("body", b"")
        del message
        if chunk:
            yield chunk
        del chunk


def declared_length(content_length: str | None) -> int | None:
    """The length a `Content-Length` declares, if it is one (and not past `declared_too_large`'s 18 digits)."""
    if content_length is None or not (content_length.isascii() and content_length.isdigit()):
        return None
    return int(content_length) if len(content_length) <= 18 else None


def declared_too_large(content_length: str | None, limit: int) -> int | None:
    """The declared length when a `Content-Length` already says the body is too large (refused unread)."""
    if content_length is None or not (content_length.isascii() and content_length.isdigit()):
        return None
    if len(content_length) > 18:  # more than any limit, and int() of thousands of digits is refused by Python
        return limit + 1
    declared = int(content_length)
    return declared if declared > limit else None


async def read_limited(chunks: AsyncIterator[bytes], limit: int, memory: Budget, hasher: Hasher | None = None,
                       arrived: Callable[[int], None] | None = None,
                       admit: Callable[[int], None] | None = None) -> bytes:
    """The whole body, or TooLarge as soon as the running count passes `limit`; each chunk also goes to `hasher`.
    `admit` is told each chunk's size before it is taken, and may raise (`Unadmitted`) to refuse it: the body is read
    no further. `arrived` is told the body's size once it has all arrived, before it is loaded from its spool: a body
    it refuses by raising (a signature that does not cover it) never sits in memory whole."""
    total = 0
    with Spool(memory) as held:
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise TooLarge(total, limit)
            if admit is not None:
                admit(len(chunk))
            if hasher is not None:
                hasher.update(chunk)
            held.write(chunk)
            del chunk  # not kept while the next is awaited
        if arrived is not None:
            arrived(total)
        return held.read()
