"""read_to_end (services/common/changelog.py) on the real broker: committed records below the end, nothing else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

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


@asynccontextmanager
async def open_transaction(conn: KafkaConnection, topic: str, value: bytes, unique: str) -> AsyncIterator[
        AIOKafkaProducer]:
    """A producer of its own whose transaction holds `value` in partition 0, open: the body commits or aborts it."""
    other = clients.transactional_producer(conn, transactional_id=f"test-changelog-{value.decode()}-{unique}",
                                           client_id="tests")
    await other.start()
    try:
        await other.begin_transaction()
        await other.send_and_wait(topic, value, key=value, partition=0)
        yield other
    finally:
        await other.stop()


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
    """The end is fixed when the restore starts: records committed after that are the consumer's, not the restore's;
    `ends` says where the restore stopped (the first record it left out)."""
    await write(producer, topic, [(0, b"before")], commit=True)
    read_bounds = changelog.bounds

    async def bounds(conn: KafkaConnection, tps: list[TopicPartition], client_id: str,
                     since_ms: int | None) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int] | None]:
        """The restore's end, with a committed write slipped in right after it was read."""
        end = await read_bounds(conn, tps, client_id, since_ms)
        await write(producer, topic, [(0, b"after")], commit=True)
        return end

    monkeypatch.setattr(changelog, "bounds", bounds)
    applied: list[bytes | None] = []
    ends: dict[int, int] = {}
    count = await changelog.read_to_end(conn, topic, [0], lambda _, r: applied.append(r.value), client_id="tests",
                                        ends=ends)
    assert (count, applied) == (1, [b"before"])
    assert ends == {0: 2}  # "before" at 0, its commit marker at 1, "after" at 2


async def test_a_transaction_committed_as_the_restore_begins_is_read_whole(
        conn: KafkaConnection, topic: str, producer: AIOKafkaProducer, unique: str) -> None:
    """A transaction open when the restore begins and committed while it reads (as one whose commit returned just
    before, its markers not written yet, looks to a reader) is read whole. Before, the restore ended at the last
    stable offset it found at the start, without the previous owner's last records: the ids a worker had just
    published, missing from de-duplication; a state's last change, missing from metrics."""
    await write(producer, topic, [(0, b"c1")], commit=True)
    async with open_transaction(conn, topic, b"late", unique) as late:
        seen = asyncio.Event()
        applied: list[bytes | None] = []

        def apply(_: int, record: ConsumerRecord[bytes, bytes]) -> None:
            applied.append(record.value)
            seen.set()

        ends: dict[int, int] = {}
        restore = asyncio.create_task(changelog.read_to_end(conn, topic, [0, 1], apply, client_id="tests", ends=ends))
        await asyncio.wait_for(seen.wait(), timeout=30)  # it read what was committed, and stands at the open one
        await late.commit_transaction()
        assert await asyncio.wait_for(restore, timeout=30) == 2
    assert applied == [b"c1", b"late"]
    assert ends == {0: 4, 1: 0}  # c1, its marker, late, its marker


async def test_a_transaction_left_open_is_not_waited_for(
        conn: KafkaConnection, topic: str, producer: AIOKafkaProducer, unique: str) -> None:
    """A transaction that stays open (its producer killed mid-transaction: the broker aborts it after its timeout)
    holds the restore `SETTLE_S` at most: the committed records before it are read, its own are not, and `ends` says
    the restore stopped where it began."""
    await write(producer, topic, [(0, b"c1")], commit=True)
    async with open_transaction(conn, topic, b"open", unique) as stuck:
        applied: list[bytes | None] = []
        ends: dict[int, int] = {}
        count = await asyncio.wait_for(changelog.read_to_end(
            conn, topic, [0], lambda _, r: applied.append(r.value), client_id="tests", ends=ends), timeout=30)
        await stuck.abort_transaction()
    assert (count, applied, ends) == (1, [b"c1"], {0: 2})


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


async def test_from_a_time_a_transaction_open_at_the_start_is_read_too(
        conn: KafkaConnection, topic: str, producer: AIOKafkaProducer, unique: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With `since_ms`, where to begin is looked up past the last stable offset too: a read_committed reader's time
    index stops there, so the first record after the time, in a transaction open at the start, sent the restore to
    the end and it read nothing (review of ADR 0037; `dlq list --since`, `trace --since`)."""
    await write(producer, topic, [(0, b"old")], commit=True)
    since_ms = int(time.time() * 1000) + 1
    await asyncio.sleep(0.01)  # a later timestamp for the open transaction's record
    read_bounds, began = changelog.bounds, asyncio.Event()

    async def bounds(*args: Any) -> Any:
        found = await read_bounds(*args)
        began.set()
        return found

    monkeypatch.setattr(changelog, "bounds", bounds)
    async with open_transaction(conn, topic, b"new", unique) as late:
        applied: list[bytes | None] = []
        restore = asyncio.create_task(changelog.read_to_end(
            conn, topic, [0], lambda _, r: applied.append(r.value), client_id="tests", since_ms=since_ms))
        await asyncio.wait_for(began.wait(), timeout=30)
        await late.commit_transaction()
        assert await asyncio.wait_for(restore, timeout=30) == 1
    assert applied == [b"new"]

