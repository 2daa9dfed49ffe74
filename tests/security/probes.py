"""What a principal may do on the secure broker, asked the way its code would do it (no mocks, real requests)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from schemas.topics import PARTITIONS
from services.common import clients
from services.common.settings import KafkaConnection

GUARD_S = 60.0
"""Only a guard against a hang: every probe ends with an answer from the broker long before."""


async def writable(conn: KafkaConnection, topics: list[str]) -> set[str]:
    """The topics among `topics` an idempotent producer of `conn` gets a record acknowledged on (none for a principal
    that may write no topic at all: the broker refuses its producer id, ClusterAuthorizationFailed)."""
    producer = clients.producer(conn, client_id="security-probe", request_timeout_ms=10_000)
    allowed = set()
    try:
        async with asyncio.timeout(GUARD_S):
            await producer.start()  # asks for the producer id
            for topic in topics:
                try:
                    await producer.send_and_wait(topic, b"probe", key=b"02269")
                    allowed.add(topic)
                except TopicAuthorizationFailedError:
                    pass
    except ClusterAuthorizationFailedError:
        assert not allowed
    finally:
        await producer.stop()
    return allowed


async def readable(conn: KafkaConnection, topic: str, count: int = PARTITIONS) -> bool:
    """True once a fetch of each of the `count` partitions of `topic` is answered (its high watermark is known),
    False if refused.

    A consumer without a group (as the changelog readers and `commune-bus tail` are), subscribed to the topic.
    """
    consumer = clients.consumer(conn, topic, client_id="security-probe", request_timeout_ms=10_000)
    partitions = [TopicPartition(topic, p) for p in range(count)]
    try:
        async with asyncio.timeout(GUARD_S):
            await consumer.start()
            while any(consumer.highwater(tp) is None for tp in partitions):
                await consumer.getmany(timeout_ms=200)
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        await consumer.stop()


async def joins(conn: KafkaConnection, group: str, topic: str) -> bool:
    """True once a consumer of `conn` in `group` is assigned partitions of `topic`, False if the group is refused."""
    consumer = clients.consumer(conn, topic, client_id="security-probe", group_id=group, request_timeout_ms=10_000)
    try:
        async with asyncio.timeout(GUARD_S):
            await consumer.start()
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
        return True
    except GroupAuthorizationFailedError:
        return False
    finally:
        await consumer.stop()


async def transacts(conn: KafkaConnection, transactional_id: str, topic: str) -> bool:
    """True if a transactional producer with `transactional_id` commits a record to `topic`, False if the id is
    refused."""
    producer = clients.transactional_producer(conn, transactional_id=transactional_id, client_id="security-probe",
                                              request_timeout_ms=10_000)
    try:
        async with asyncio.timeout(GUARD_S):
            await producer.start()
            async with producer.transaction():
                await producer.send(topic, b"probe", key=b"02269")
        return True
    except TransactionalIdAuthorizationFailed:
        return False
    finally:
        await producer.stop()
