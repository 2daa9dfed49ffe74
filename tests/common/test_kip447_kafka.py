"""KIP-447 for aiokafka (services/common/kip447.py) on the real broker: the group coordinator refuses a transactional
offset commit of a past generation, and a stable offset read waits for the transaction that moves the offsets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.structs import RecordMetadata

from services.common import clients, kip447
from services.common.settings import KafkaConnection
from tests.common.conftest import NewTopicOf
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


@pytest.fixture
async def topics(new_topic: NewTopicOf) -> tuple[str, str]:
    return await new_topic("kip447-in", 2), await new_topic("kip447-out", 1)


@pytest.fixture
async def member(conn: KafkaConnection, topics: tuple[str, str], unique: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer that has joined its group (a generation and a member id) and owns both input partitions."""
    consumer = clients.consumer(conn, topics[0], client_id="tests", group_id=f"test-kip447-{unique}",
                                isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()

    async def joined() -> bool:
        await consumer.getmany(timeout_ms=100)
        return len(consumer.assignment()) == 2
    await eventually_async(joined, timeout=30)
    yield consumer
    await consumer.stop()


@pytest.fixture
async def producer(conn: KafkaConnection, unique: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = clients.transactional_producer(conn, transactional_id=f"test-kip447-{unique}", client_id="tests")
    await producer.start()
    yield producer
    await producer.stop()


async def committed_values(conn: KafkaConnection, topic: str) -> list[bytes]:
    reader = clients.consumer(conn, topic, client_id="tests", isolation_level="read_committed",
                              auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    try:
        batches = await reader.getmany(timeout_ms=2000)
        return [r.value or b"" for records in batches.values() for r in records]
    finally:
        await reader.stop()


async def test_offsets_of_the_current_generation_commit_with_the_transaction(
        conn: KafkaConnection, topics: tuple[str, str], member: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
    tp = TopicPartition(topics[0], 0)
    assert await kip447.fetch_stable_offsets(member, [tp], timeout_s=10) == {tp: None}
    group = kip447.GroupMetadata.of(member)
    assert group.generation_id >= 1 and group.member_id
    async with producer.transaction():
        await producer.send_and_wait(topics[1], b"current")
        await kip447.send_offsets_to_transaction(producer, {tp: 42}, group)
    assert await kip447.fetch_stable_offsets(member, [tp], timeout_s=10) == {tp: 42}
    assert await committed_values(conn, topics[1]) == [b"current"]


async def test_a_past_generation_is_refused_and_its_transaction_aborted(
        conn: KafkaConnection, topics: tuple[str, str], member: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
    """What a worker paused past its session timeout meets: its records and offsets never become visible."""
    tp = TopicPartition(topics[0], 1)
    current = kip447.GroupMetadata.of(member)
    for stale in (replace(current, generation_id=current.generation_id + 7),
                  replace(current, member_id=current.member_id + "-evicted"),
                  replace(current, generation_id=-1, member_id="")):
        with pytest.raises(kip447.GroupFenced):
            async with producer.transaction():
                await producer.send_and_wait(topics[1], b"zombie")
                await kip447.send_offsets_to_transaction(producer, {tp: 99}, stale)
    assert await kip447.fetch_stable_offsets(member, [tp], timeout_s=10) == {tp: None}
    async with producer.transaction():  # the producer itself is not fenced: the next transaction goes through
        await producer.send_and_wait(topics[1], b"after")
        await kip447.send_offsets_to_transaction(producer, {tp: 5}, current)
    assert await committed_values(conn, topics[1]) == [b"after"]
    assert await kip447.fetch_stable_offsets(member, [tp], timeout_s=10) == {tp: 5}


async def test_a_stable_read_waits_for_the_open_transaction(
        topics: tuple[str, str], member: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
    tp = TopicPartition(topics[0], 0)
    await producer.begin_transaction()
    await producer.send_and_wait(topics[1], b"open")
    await kip447.send_offsets_to_transaction(producer, {tp: 7}, kip447.GroupMetadata.of(member))
    with pytest.raises(kip447.UnstableOffsets):
        await kip447.fetch_stable_offsets(member, [tp], timeout_s=1)
    assert await member.committed(tp) is None  # aiokafka's own read does not wait: it sees the old offset
    await producer.commit_transaction()
    assert await kip447.fetch_stable_offsets(member, [tp], timeout_s=10) == {tp: 7}


@pytest.mark.parametrize("stale", ["generation", "member"])
async def test_the_records_of_a_refused_transaction_are_not_committed_by_the_next(
        conn: KafkaConnection, topics: tuple[str, str], member: AIOKafkaConsumer, producer: AIOKafkaProducer,
        stale: str) -> None:
    """The group refuses a transaction's offsets (the worker was evicted while paused): what it had sent is aborted
    at the broker. aiokafka forgets a transaction's partitions on such an error, takes it for empty and ends it
    without asking the broker, whose transaction stays open: the next transaction of the producer then committed
    the refused one's records with its own (a CI run: 46 records published twice after a pause of 12 s)."""
    tp = TopicPartition(topics[0], 0)
    current = kip447.GroupMetadata.of(member)
    refused = (replace(current, generation_id=current.generation_id + 7) if stale == "generation"
               else replace(current, member_id=current.member_id + "-evicted"))
    with pytest.raises(kip447.GroupFenced):
        async with producer.transaction():
            await producer.send_and_wait(topics[1], b"zombie")  # on the broker, in the open transaction
            await kip447.send_offsets_to_transaction(producer, {tp: 99}, refused)
    async with producer.transaction():
        await producer.send_and_wait(topics[1], b"after")
        await kip447.send_offsets_to_transaction(producer, {tp: 5}, current)
    assert await committed_values(conn, topics[1]) == [b"after"]
    assert await kip447.fetch_stable_offsets(member, [tp], timeout_s=10) == {tp: 5}


async def test_a_record_sent_while_the_refused_offsets_were_in_flight_is_aborted_too(
        conn: KafkaConnection, topics: tuple[str, str], member: AIOKafkaConsumer, producer: AIOKafkaProducer,
        new_topic: NewTopicOf) -> None:
    """A record whose partition was still waiting to be added to the transaction when the group refused its offsets
    is aborted with it. aiokafka forgot such a partition on the error and sent its batch outside the broker's
    transaction (partition verification is off, infra/kafka/server.properties), where the producer's next
    transaction on that partition committed it."""
    late = await new_topic("kip447-late", 1)
    await producer.partitions_for(late)  # its metadata known: the send below waits for nothing but the accumulator
    tp = TopicPartition(topics[0], 0)
    current = kip447.GroupMetadata.of(member)
    refused = replace(current, generation_id=current.generation_id + 7)
    txn = getattr(producer, "_txn_manager")  # noqa: B009  (private in aiokafka 0.14)
    coordinators = getattr(producer, "_sender")._coordinators  # noqa: B009
    sent: list[asyncio.Future[RecordMetadata]] = []
    with pytest.raises(kip447.GroupFenced):
        async with producer.transaction():
            await producer.send_and_wait(topics[1], b"zombie")
            offsets = asyncio.ensure_future(kip447.send_offsets_to_transaction(producer, {tp: 99}, refused))
            await eventually_async(lambda: CoordinationType.GROUP in coordinators, timeout=10, interval=0,
                                   what="the group's coordinator found: the refused TxnOffsetCommit is on its way")
            sent.append(await producer.send(late, b"late", partition=0))
            assert TopicPartition(late, 0) in txn.partitions_to_add()
            await offsets
    await asyncio.gather(*sent, return_exceptions=True)
    async with producer.transaction():
        await producer.send_and_wait(late, b"after", partition=0)
        await kip447.send_offsets_to_transaction(producer, {tp: 5}, current)
    assert await committed_values(conn, late) == [b"after"]
