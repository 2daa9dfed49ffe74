"""read_to_end (services/common/changelog.py) on the real broker: committed records below the end, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from services.common import changelog, clients
from services.common.settings import KafkaConnection
from tests.common.conftest import NewTopicOf

pytestmark = pytest.mark.kafka


@pytest.fixture
async def topic(new_topic: NewTopicOf) -> str:
    """A 3-partition changelog topic of this test only."""
    return await new_topic("changelog", 3)


@pytest.fixture
async def producer(conn: KafkaConnection, unique: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = clients.transactional_producer(conn, transactional_id=f"test-changelog-{unique}", client_id="tests")
    await producer.start()
    yield producer
    await producer.stop()


async def write(producer: AIOKafkaProducer, topic: str, records: list[tuple[int, bytes]], *, commit: bool) -> None:
    """Write (partition, value) records in one transaction, then commit or abort it."""
    await producer.begin_transaction()
    for partition, value in records:
        await producer.send_and_wait(topic, value, key=value, partition=partition)
    if commit:
        await producer.commit_transaction()
    else:
        await producer.abort_transaction()


async def test_restores_exactly_the_committed_records(
        conn: KafkaConnection, topic: str, producer: AIOKafkaProducer) -> None:
    """Aborted records are skipped, an abort at a partition's end does not hang the restore, order is kept."""
    await write(producer, topic, [(0, b"c1"), (0, b"c2"), (1, b"c3")], commit=True)
    await write(producer, topic, [(0, b"x1"), (1, b"x2")], commit=False)
    await write(producer, topic, [(0, b"c4")], commit=True)
    await write(producer, topic, [(0, b"x3")], commit=False)  # partition 0 ends with an aborted transaction

    applied: list[tuple[int, bytes | None]] = []

    def apply(partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
        applied.append((partition, record.value))

    restore = changelog.read_to_end(conn, topic, [0, 1, 2], apply, client_id="tests", max_records=1)
    count = await asyncio.wait_for(restore, timeout=30)
    assert count == len(applied) == 4
    assert [v for p, v in applied if p == 0] == [b"c1", b"c2", b"c4"]
    assert [v for p, v in applied if p == 1] == [b"c3"]


async def test_only_requested_partitions_are_read(
        conn: KafkaConnection, topic: str, producer: AIOKafkaProducer) -> None:
    """Partitions not asked for are left alone; asking for none reads nothing."""
    await write(producer, topic, [(0, b"a"), (1, b"b"), (2, b"c")], commit=True)
    applied: list[int] = []
    assert await changelog.read_to_end(conn, topic, [2, 1], lambda p, _: applied.append(p), client_id="tests") == 2
    assert sorted(applied) == [1, 2]
    assert await changelog.read_to_end(conn, topic, [], lambda p, _: applied.append(p), client_id="tests") == 0


async def test_records_written_after_the_restore_began_are_left_out(
        conn: KafkaConnection, topic: str, producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end is fixed when the restore starts: records committed after that are the consumer's, not the restore's."""
    await write(producer, topic, [(0, b"before")], commit=True)
    build = clients.consumer

    def consumer(conn: KafkaConnection, *topics: str, client_id: str, **overrides: Any) -> AIOKafkaConsumer:
        """The restore's reader, with a committed write slipped in right after it read the end offsets."""
        reader = build(conn, *topics, client_id=client_id, **overrides)
        read_end = reader.end_offsets

        async def end_offsets(partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
            wanted = list(partitions)
            end = await read_end(wanted)
            await write(producer, topic, [(0, b"after")], commit=True)
            # drop what was prefetched before the write: the first fetch then carries the late record too,
            # and only the end offset read at the start can keep it out
            await reader.seek_to_beginning(*wanted)
            return end

        monkeypatch.setattr(reader, "end_offsets", end_offsets)
        return reader

    monkeypatch.setattr(clients, "consumer", consumer)
    applied: list[bytes | None] = []
    count = await changelog.read_to_end(conn, topic, [0], lambda _, r: applied.append(r.value), client_id="tests")
    assert (count, applied) == (1, [b"before"])


async def test_a_slow_restore_gives_the_loop_back_between_records(conn: KafkaConnection, topic: str) -> None:
    """Applying a chunk of records (here 2 ms each, 600 of them) lets the loop's other tasks run every YIELD_EVERY_S,
    as the stall watch and heartbeats must: a task counting its turns is seen to move on dozens of times while the
    records are applied (before: the whole chunk, 1.2 s, without a break; with the restore of a few hundred
    thousand states, past the stall limit)."""
    import time

    producer = clients.producer(conn, client_id="tests", linger_ms=20)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, b"v%d" % i, key=b"k", partition=0) for i in range(600)])
    finally:
        await producer.stop()
    turns, seen = 0, set()
    ticking = True

    async def ticker() -> None:
        nonlocal turns
        while ticking:
            turns += 1
            await asyncio.sleep(0)

    def apply(_partition: int, _record: ConsumerRecord[bytes, bytes]) -> None:
        seen.add(turns)
        time.sleep(0.002)

    ticks = asyncio.create_task(ticker())
    try:
        count = await asyncio.wait_for(changelog.read_to_end(conn, topic, [0], apply, client_id="tests"), timeout=60)
    finally:
        ticking = False
        await ticks
    print(f"the other task ran between records {len(seen) - 1} times in 600 records x 2 ms")
    assert count == 600
    assert len(seen) >= 600 * 0.002 / changelog.YIELD_EVERY_S / 3
