"""Fixtures of the runtime's tests: the connection, topics of one test only, a service name of one test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka.admin import NewTopic

from services.common import clients
from services.common.admin import delete_topics, partition_counts
from services.common.settings import KafkaConnection
from tests.waiting import eventually_async

NewTopicOf = Callable[[str, int], Awaitable[str]]
"""(purpose, partitions) -> the name of a topic created for this test."""


@pytest.fixture
def service() -> str:
    """A service name of this test's own, so the series it labels start empty (counters at zero)."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conn(kafka_bootstrap: str) -> KafkaConnection:
    return KafkaConnection(bootstrap=kafka_bootstrap)


@pytest.fixture
async def new_topic(conn: KafkaConnection, unique: str) -> AsyncIterator[NewTopicOf]:
    """Creates topics named after the test's unique suffix, behind the registry's back; deleted afterwards."""
    created: list[str] = []

    async def create(purpose: str, partitions: int) -> str:
        name = f"test.{purpose}.{unique}"
        admin = clients.admin(conn)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        created.append(name)
        # the broker answering the next describe may not have the new topic's metadata yet (seen on the secure broker)
        async def described() -> bool:
            return await partition_counts(conn, [name]) == {name: partitions}

        await eventually_async(described, what=f"{name} described with {partitions} partitions")
        return name

    yield create
    await delete_topics(conn, created)
