"""A chunked body may not be cut into a great many tiny chunks: past its allowance the request is malformed; nor
may a request's head pass `MAX_HEAD_BYTES`, however it arrives.

h11 spends about 5 µs on each chunk and uvicorn hands it all a read holds at once, so a body of 1-byte chunks (6 bytes
on the wire each) held the event loop a quarter of a second per read, for every connection sending one: four of them,
~1 MB/s in all, from a client with no credential (a registry id and any signature: the HMAC is checked once the body
has arrived), kept `/healthz` from answering for 30 s (audit of 2026-12-05). A request past `chunks_allowed` is
refused as uvicorn refuses any malformed request (400, the connection closed); a client streaming one record a chunk
(at most 1,000 a request) stays far within it.
"""

from __future__ import annotations

import h11

MAX_HEAD_BYTES = 16 * 1024
"""A request's line and headers at most (uvicorn's `h11_max_incomplete_event_size` holds only a head that arrives over
several reads: one read whole, ~100 KB, was taken; audit of 2026-12-05)."""
FREE_CHUNKS = 4096
"""Chunks any body may have."""
BYTES_PER_CHUNK = 512
"""Beyond the free ones, one more chunk per this many bytes of the body."""


def chunks_allowed(body_bytes: int) -> int:
    return FREE_CHUNKS + body_bytes // BYTES_PER_CHUNK


class ChunkCountingConnection(h11.Connection):
    """The server side of h11, counting the current request's body chunks against `chunks_allowed`."""

    def __init__(self, max_incomplete_event_size: int | None) -> None:
        if max_incomplete_event_size is None:
            super().__init__(h11.SERVER)  # h11's default, as uvicorn's
        else:
            super().__init__(h11.SERVER, max_incomplete_event_size)
        self._chunks = 0
        self._bytes = 0

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        if isinstance(event, h11.Request):
            self._chunks, self._bytes = 0, 0
            if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_HEAD_BYTES:
                raise h11.RemoteProtocolError("request head too large", 431)
        elif isinstance(event, h11.Data) and event.chunk_start:
            self._chunks += 1
            self._bytes += len(event.data)
            if self._chunks > chunks_allowed(self._bytes):  # uvicorn answers 400 and closes the connection
                raise h11.RemoteProtocolError("too many chunks for the body's size")
        elif isinstance(event, h11.Data):
            self._bytes += len(event.data)
        return event
