"""A raw record's written time (`outputs.written_at`) is a time a datetime holds, whatever timestamp or header its
producer set: at CreateTime the broker keeps any 64-bit timestamp, and one before the year 1 raised out of validation,
ending intake's run at every restart (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from schemas.deadletter import DeadLetterContext
from services.intake.dedup import SeenByPartition
from services.intake.outputs import LATEST_WRITTEN_MS, WRITTEN_AT, written_at
from tests.intake.test_validate import AWAY, HOME, RAW_TOPIC, dead_letter_reasons, published_ids, raw, validated

pytestmark = pytest.mark.unit

INT64 = st.integers(-(2**63), 2**63 - 1)
HEADER_VALUES = st.one_of(st.none(), st.binary(max_size=24), INT64.map(lambda n: str(n).encode()),
                          st.sampled_from([b"", b"-1", b"0", b"9" * 15, b"9" * 16, "١٢".encode()]))
HEADERS = st.lists(st.tuples(st.sampled_from([WRITTEN_AT, "ce_id"]), HEADER_VALUES), max_size=4)
HOSTILE = [-1, -2, -(10**14), -(2**62), -(2**63), 2**63 - 1]
"""Timestamps a producer may set on a topic at CreateTime (the broker kept -2, -10**14 and -2**62, measured)."""
NOW_MS = 1_796_000_000_000


@given(timestamp=INT64, timestamp_type=st.integers(-1, 2), headers=HEADERS,
       read_ms=st.integers(0, LATEST_WRITTEN_MS))
def test_any_timestamp_and_header_give_a_time_a_datetime_holds(
        timestamp: int, timestamp_type: int, headers: list[tuple[str, bytes | None]], read_ms: int) -> None:
    """Any 64-bit timestamp of either type, any `intake.written-at` bytes: a time from the epoch to 2100, never later
    than the record's own timestamp when that is within them, and its datetime never raises."""
    written = written_at(timestamp, headers, read_ms, timestamp_type)
    assert 0 <= written <= LATEST_WRITTEN_MS
    assert datetime.fromtimestamp(written / 1000, UTC).year in range(1970, 2101)
    if 0 <= timestamp <= LATEST_WRITTEN_MS:
        assert written <= timestamp


@pytest.mark.parametrize("timestamp", HOSTILE)
def test_a_time_before_the_epoch_is_the_epoch(timestamp: int) -> None:
    """Before the epoch is no time: taken as the epoch (before every erasure, ADR 0042), never as when it was read; a
    broker-stamped time past 2100 is 2100's end."""
    assert written_at(timestamp, [], NOW_MS) == (0 if timestamp < 0 else NOW_MS)
    assert written_at(timestamp, [], NOW_MS, timestamp_type=1) == (0 if timestamp < 0 else LATEST_WRITTEN_MS)


def _created(record: ConsumerRecord[bytes, bytes], timestamp: int) -> ConsumerRecord[bytes, bytes]:
    """`record` as a producer dated it on a topic at CreateTime."""
    return ConsumerRecord(record.topic, record.partition, record.offset, timestamp, 0, record.key, record.value,
                          None, record.serialized_key_size, record.serialized_value_size, record.headers)


@pytest.mark.parametrize("timestamp", HOSTILE)
async def test_a_record_dated_anywhere_is_published_moved_or_dead_lettered(timestamp: int) -> None:
    """A valid record, one off its commune's partition and an invalid one, each dated `timestamp` by its producer:
    published, moved (its original's time in digits, as the header must be: the epoch for one before it) and
    dead-lettered (its `dlq.source.written-at` as well); the record after each is published. Before, validation
    raised ValueError."""
    published = await validated(SeenByPartition(), _created(raw(HOME, 0, "evt-1"), timestamp), raw(HOME, 1, "evt-2"))
    assert published_ids(published) == [b"evt-1", b"evt-2"]
    moved = await validated(SeenByPartition(), _created(raw(AWAY, 0, "evt-1"), timestamp))
    [(topic, _, _, headers, partition)] = moved.others
    original = dict(headers)[WRITTEN_AT]
    assert (topic, partition) == (RAW_TOPIC, HOME) and original.isdigit() and (timestamp > 0 or original == b"0")
    bad = _created(raw(HOME, 0, "evt-1"), timestamp)
    bad = ConsumerRecord(bad.topic, bad.partition, bad.offset, bad.timestamp, bad.timestamp_type, None, b"not json",
                         None, 0, 8, [])
    rejected = await validated(SeenByPartition(), bad, raw(HOME, 1, "evt-2"))
    assert dead_letter_reasons(rejected) == [b"not_json"] and published_ids(rejected) == [b"evt-2"]
    [(_, _, _, letter, _)] = rejected.others[:1]
    written = DeadLetterContext.from_headers(letter).source_written_at
    assert written is not None and (timestamp > 0 or written == 0)
