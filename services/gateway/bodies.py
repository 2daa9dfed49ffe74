"""Reading a request body under a byte limit while it streams (chunked transfer included).

The running count is checked after every chunk, so a body past the limit is refused having read at most
the limit plus one chunk (the server reads 64 KiB at a time), whatever it declares or however long it is.
A body still arriving is held in memory up to `SPILL_BYTES`, past that in a temporary file: uploads in
progress cost little memory each, and one refused for its size never sat in memory at all.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Protocol

SPILL_BYTES = 1024 * 1024


class TooLarge(Exception):
    """The body passed the limit; `read` is how many bytes had arrived when it was refused."""

    def __init__(self, read: int, limit: int) -> None:
        self.read, self.limit = read, limit
        super().__init__(f"the body passed {limit} bytes (refused after {read})")


class Unadmitted(Exception):
    """`admit` refused a chunk: the body is not read further."""


class Hasher(Protocol):
    def update(self, chunk: bytes) -> None: ...


def declared_too_large(content_length: str | None, limit: int) -> int | None:
    """The declared length when a `Content-Length` already says the body is too large (refused unread)."""
    if content_length is None or not (content_length.isascii() and content_length.isdigit()):
        return None
    if len(content_length) > 18:  # more than any limit, and int() of thousands of digits is refused by Python
        return limit + 1
    declared = int(content_length)
    return declared if declared > limit else None


async def read_limited(chunks: AsyncIterator[bytes], limit: int, hasher: Hasher | None = None,
                       verify: Callable[[], None] | None = None, admit: Callable[[int], bool] | None = None) -> bytes:
    """The whole body, or TooLarge as soon as the running count passes `limit`; each chunk also goes to `hasher`.
    `verify` (a signature's) is called once the body has arrived and before it is loaded from its temporary file:
    a body it refuses (by raising) never sits in memory whole. `admit` is asked about each chunk's size before it
    is taken: False raises `Unadmitted`."""
    total = 0
    with tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES) as held:
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise TooLarge(total, limit)
            if admit is not None and not admit(len(chunk)):
                raise Unadmitted
            if hasher is not None:
                hasher.update(chunk)
            held.write(chunk)
        if verify is not None:
            verify()
        held.seek(0)
        return held.read()
