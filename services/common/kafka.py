"""Kafka plumbing shared by the services: topic creation from the registry, client defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import TOPICS, TopicSpec


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="commune-bus-admin")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, topics: Iterable[TopicSpec] = TOPICS, replication_factor: int = 1) -> list[str]:
    """Create missing topics with their registry partitions and config; returns the names created."""
    async with _admin(bootstrap) as admin:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t.name not in existing]
        if not wanted:
            return []
        new = [NewTopic(t.name, t.partitions, replication_factor, topic_configs=dict(t.config)) for t in wanted]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another worker won the race; the registry is the same for both
        return [t.name for t in wanted]


async def list_topics(bootstrap: str) -> set[str]:
    async with _admin(bootstrap) as admin:
        return set(await admin.list_topics())


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics (benchmarks remove their namespaces: thousands of idle partitions slow a broker down)."""
    names = sorted(names)
    if not names:
        return
    async with _admin(bootstrap) as admin:
        await admin.delete_topics(names)
