"""A record whose header name is not UTF-8 is read, not raised (services/common/header_names.py), and the records
around it with it, once each; and aiokafka still needs the work-around, in the shape it was written for."""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record import default_records
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import header_names
from tests.raw_batches import GZIP, NO_CODEC, RawRecord, batch

pytestmark = pytest.mark.unit

BAD = b"\xff\xfe"
TP = TopicPartition("commune.raw.dossier.src.x", 0)


def _records(n: int, bad_at: set[int] = frozenset(), name: bytes = BAD) -> list[RawRecord]:
    return [(b"02269", b'{"n":%d}' % i, [(b"commune-code", b"02269"), (name if i in bad_at else b"x-ok", b"v")])
            for i in range(n)]


def _concatenated(*batches: bytes) -> bytes:
    """Batches as one fetch returns them, each with the next offsets."""
    out = bytearray()
    base = 0
    for data in batches:
        chunk = bytearray(data)
        chunk[:8] = base.to_bytes(8, "big", signed=True)  # the base offset is outside the CRC
        base += int.from_bytes(chunk[23:27], "big", signed=True) + 1  # last offset delta
        out += chunk
    return bytes(out)


def _read(data: bytes, fetch_offset: int = 0) -> tuple[list[Any], int]:
    """What aiokafka's `PartitionRecords` gives from a fetch of `data` once the work-around is in, and the offset it
    fetches next."""
    header_names.read_undecodable_header_names()
    records = fetcher.PartitionRecords(TP, fetcher.MemoryRecords(data), [], fetch_offset, None, None, True,
                                       fetcher.READ_COMMITTED)
    return list(records), records.next_fetch_offset


def _name(name: bytes) -> str:
    return name.decode("utf-8", "replace")


def test_aiokafka_still_raises_on_a_header_name_that_is_not_utf8() -> None:
    """Fails once aiokafka reads such a record itself: the work-around can go (its C and its pure-Python batch)."""
    data = batch(_records(3, {1}))
    c_batch = MemoryRecords(data).next_batch()
    assert c_batch is not None
    c_records = iter(c_batch)
    assert next(c_records).headers[1] == ("x-ok", b"v")
    for _ in range(2):  # and again on every later call: the records after it are out of reach
        with pytest.raises(UnicodeDecodeError):
            next(c_records)
    with pytest.raises(CorruptRecordException) as raised:
        list(default_records._DefaultRecordBatchPy(data))
    assert isinstance(raised.value.__cause__, UnicodeDecodeError)


def test_the_fetcher_builds_a_fetchs_records_with_the_module_name_the_work_around_replaces() -> None:
    """`Fetcher` reads `MemoryRecords` from its module when a fetch is answered, and `PartitionRecords` takes each
    batch's records by iterating it (the `for` that `_TolerantBatch.__iter__` answers)."""
    answer = fetcher.Fetcher._proc_fetch_request
    assert "MemoryRecords" in answer.__code__.co_names and "MemoryRecords" not in answer.__code__.co_varnames
    assert "MemoryRecords(part_data[-1])" in inspect.getsource(answer)
    source = inspect.getsource(fetcher.PartitionRecords._unpack_records)
    assert "records.next_batch()" in source and "for record in next_batch:" in source


def test_a_batch_with_an_undecodable_name_gives_every_record_once_the_name_as_java_reads_it() -> None:
    """Records before and after the bad ones, in its batch and the next, come out once each, in order, the names
    that are not UTF-8 with U+FFFD, every other field as written; the next fetch starts after the last batch."""
    at = 1_764_000_000_000
    data = _concatenated(*(batch(records, timestamp_ms=at) for records in (
        _records(2), _records(5, {1, 3}, b"ce_\xc3\x28x"), _records(2, {0}))))
    records, next_offset = _read(data)
    assert [r.offset for r in records] == list(range(9)) and next_offset == 9
    assert [r.headers[1][0] for r in records] == ["x-ok"] * 3 + ["ce_\ufffd(x", "x-ok", "ce_\ufffd(x", "x-ok",
                                                                  "\ufffd\ufffd", "x-ok"]
    assert [r.value for r in records] == [b'{"n":%d}' % i for i in (0, 1, 0, 1, 2, 3, 4, 0, 1)]
    assert {(r.key, r.headers[0], r.timestamp) for r in records} == {(b"02269", ("commune-code", b"02269"), at)}


def test_a_compressed_batch_is_read_again_from_its_bad_record() -> None:
    """A gzip batch: the records before the bad one are not given twice."""
    records, next_offset = _read(batch(_records(4, {2}), GZIP))
    assert [(r.offset, r.headers[1][0]) for r in records] == [(0, "x-ok"), (1, "x-ok"), (2, "\ufffd\ufffd"),
                                                              (3, "x-ok")]
    assert next_offset == 4


def test_a_fetch_from_inside_a_batch_starts_at_its_offset() -> None:
    """A fetch at offset 2 of a batch (a restart from a committed offset) skips the records before it, as aiokafka
    does, the bad one first."""
    records, _ = _read(batch(_records(4, {2})), fetch_offset=2)
    assert [(r.offset, r.headers[1][0]) for r in records] == [(2, "\ufffd\ufffd"), (3, "x-ok")]


def test_the_pure_python_batch_is_read_leniently_too() -> None:
    """Without aiokafka's C extension the error comes as CorruptRecordException around UnicodeDecodeError."""
    data = batch(_records(3, {1}))
    tolerant = header_names._TolerantBatch(default_records._DefaultRecordBatchPy(data), memoryview(data))
    assert [r.headers[1][0] for r in tolerant] == ["x-ok", "\ufffd\ufffd", "x-ok"]


def test_a_corrupt_batch_still_raises() -> None:
    """Only an undecodable name is read leniently: a record of another bad structure raises as before."""
    data = bytearray(batch(_records(2)))
    data[-1:] = b""  # the last record cut short, the batch's length and CRC made to match
    data[8:12] = (len(data) - 12).to_bytes(4, "big")
    data[17:21] = calc_crc32c(bytes(data[21:])).to_bytes(4, "big")
    with pytest.raises(CorruptRecordException):
        _read(bytes(data))


_names = st.one_of(st.text(max_size=6).map(lambda s: s.encode()), st.binary(max_size=6))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(_names, st.one_of(st.none(), st.binary(max_size=4))), max_size=3),
                min_size=1, max_size=12),
       st.integers(min_value=1, max_value=12), st.sampled_from([NO_CODEC, GZIP]))
def test_any_header_names_read_as_java_reads_them(headers: list[list[tuple[bytes, bytes | None]]], per_batch: int,
                                                  compression: int) -> None:
    """Whatever bytes the names hold, split in batches of any size, every record comes out once, in order, each
    name as `bytes.decode("utf-8", "replace")` gives it (Java's `new String(bytes, UTF_8)`), its value as written."""
    records: list[RawRecord] = [(b"k", b"%d" % i, hs) for i, hs in enumerate(headers)]
    chunks = [records[i:i + per_batch] for i in range(0, len(records), per_batch)]
    got, next_offset = _read(_concatenated(*(batch(chunk, compression) for chunk in chunks)))
    assert [r.offset for r in got] == list(range(len(records))) and next_offset == len(records)
    assert [(r.value, list(r.headers)) for r in got] == [
        (value, [(_name(n), v) for n, v in hs]) for _, value, hs in records]
    assert list(itertools.chain.from_iterable(chunks)) == records
