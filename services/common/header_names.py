"""A record whose header name is not UTF-8 is read as Java's consumer reads it, not raised (aiokafka 0.14, ADR 0050).

A header's name is a String on the wire (UTF-8), but the broker checks no name when it appends a batch (its reader
is lenient), and a source principal may write its raw topic with any client (ADR 0018): librdkafka and kcat send a
name's bytes as given. aiokafka decodes a name strictly: its record batch raised UnicodeDecodeError (the C
extension; CorruptRecordException around it in pure Python) on that record, and again on every later call. The
error came out of `getmany`, which dropped with it the records it had already taken from the other partitions, their
positions moved past them; intake's run ended on it, came back to the same record from its committed offset, and
ended again, for ever: every partition of the worker stopped. `commune-bus tail` and `trace` ended in a traceback.

`read_undecodable_header_names` (every consumer, `clients.consumer`) makes the fetcher hand out each record batch
with its bytes (`_Batches`): a batch whose record raises so is read again from that record on with aiokafka's
pure-Python reader, each name's bytes that are not UTF-8 as U+FFFD, as Java's `String(bytes, UTF_8)` gives them.
Nothing else of a record changes, and a batch that decodes takes aiokafka's own path (one Python call more a
record). Intake dead-letters a record with U+FFFD in a header name (`not_utf8`, `services.intake.normalise`).
`tests/common/test_header_names.py` fails when aiokafka's fetcher or batches change shape.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from itertools import islice
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record import default_records
from aiokafka.record.memory_records import MemoryRecords

from services.common.aiokafka_compat import pinned

_LENGTH = struct.Struct(">i")
_LENGTH_AT, _LOG_OVERHEAD = 8, 12
"""A batch begins with its base offset (8 bytes) and the length of the rest (4)."""


class _Batches:
    """aiokafka's `MemoryRecords` of one fetch, each data batch (format v2) handed out as a `_TolerantBatch`."""

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._start = 0

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._start
        self._start = start + _LOG_OVERHEAD + _LENGTH.unpack_from(self._data, start + _LENGTH_AT)[0]
        if not isinstance(batch, default_records.DefaultRecordBatch) or batch.is_control_batch:
            return batch  # no header in either (the fetcher reads a control batch's record itself)
        return _TolerantBatch(batch, self._data[start:self._start])


class _TolerantBatch:
    """aiokafka's record batch, whose records from one with a header name that is not UTF-8 on are read leniently."""

    __slots__ = ("_batch", "_data")

    def __init__(self, batch: Any, data: memoryview) -> None:
        self._batch, self._data = batch, data

    def __getattr__(self, name: str) -> Any:  # base_offset, producer_id, validate_crc, ...: aiokafka's own
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        records = iter(self._batch)
        read = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except (UnicodeDecodeError, CorruptRecordException) as exc:
                if not isinstance(exc, UnicodeDecodeError) and not isinstance(exc.__cause__, UnicodeDecodeError):
                    raise
                yield from islice(_lenient_batch(self._data), read, None)
                return
            read += 1
            yield record


def _lenient_batch(data: memoryview) -> Any:
    """The batch `data` read by aiokafka's pure-Python reader, each header name decoded as `_LenientSlice` does."""
    batch = getattr(default_records, "_DefaultRecordBatchPy")(data)  # noqa: B009  (private in aiokafka 0.14)
    iter(batch)  # decompressed, as aiokafka's iteration begins
    batch._buffer = _LenientBuffer(batch._buffer)  # the bytes its `_read_msg` slices a header's name from
    return batch


class _LenientBuffer(bytearray):
    """A batch's records whose slices decode leniently (an index is a byte, as before)."""

    def __getitem__(self, index: Any) -> Any:
        item = bytearray.__getitem__(self, index)
        return _LenientSlice(item) if isinstance(index, slice) else item


class _LenientSlice(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """Bytes that are not `encoding` as U+FFFD, whatever `errors` asks (aiokafka asks "strict")."""
        return bytearray.decode(self, encoding, "replace")


def read_undecodable_header_names() -> None:
    """Make every aiokafka consumer read a record whose header name is not UTF-8 (idempotent)."""
    pinned("services/common/header_names.py")
    setattr(fetcher, "MemoryRecords", _Batches)  # noqa: B010  (the name `Fetcher` builds a fetch's records with)
