"""Topic layout check of services/common/admin.py on the real broker: missing topics created, wrong ones refused,
existing ones given the registry's config."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import RAW_SEGMENT_HOURS, Kind, TopicSpec
from services.common import clients
from services.common.admin import (
    TopicConfigsNotReconciled,
    TopicLayoutError,
    TopicsNotCreated,
    delete_topics,
    ensure_topics,
    list_topics,
    partition_counts,
    reconcile_configs,
)
from services.common.settings import KafkaConnection
from tests.common.conftest import NewTopicOf

pytestmark = pytest.mark.kafka


def spec(name: str, partitions: int) -> TopicSpec:
    return TopicSpec(name=name, kind=Kind.INTERNAL, key="test key", description="test topic", partitions=partitions)


@pytest.fixture
async def two_partition_topic(new_topic: NewTopicOf) -> str:
    """A topic of this test only, created with 2 partitions behind the registry's back."""
    return await new_topic("layout", 2)


async def test_existing_topic_with_another_partition_count_is_refused(
        conn: KafkaConnection, two_partition_topic: str) -> None:
    """ensure_topics raises TopicLayoutError for a 2-partition topic the registry gives 3, and creates nothing."""
    assert await partition_counts(conn, [two_partition_topic]) == {two_partition_topic: 2}
    with pytest.raises(TopicLayoutError, match=f"{two_partition_topic} has 2 partitions, the registry says 3"):
        await ensure_topics(conn, [spec(two_partition_topic, 3)])
    assert await partition_counts(conn, [two_partition_topic]) == {two_partition_topic: 2}


async def test_missing_topics_are_created_with_the_registry_count(conn: KafkaConnection, unique: str) -> None:
    """A missing topic is created with its registry partition count; a second call creates nothing and passes."""
    name = f"test.created.{unique}"
    try:
        assert await ensure_topics(conn, [spec(name, 4)]) == [name]
        assert name in await list_topics(conn)
        assert await partition_counts(conn, [name]) == {name: 4}
        assert await ensure_topics(conn, [spec(name, 4)]) == []
    finally:
        await delete_topics(conn, [name])


async def test_a_topic_the_broker_refuses_to_create_is_an_error_naming_it(conn: KafkaConnection, unique: str) -> None:
    """aiokafka returns CreateTopics refusals in the response; ensure_topics raises them (a Kafka error: the run is
    tried again), where before a service started without its topic and waited on its metadata, no cause logged."""
    too_many, bad_config = f"test.replicas.{unique}", f"test.config.{unique}"
    with pytest.raises(TopicsNotCreated, match=f"{too_many}: InvalidReplicationFactor"):
        await ensure_topics(conn, [spec(too_many, 1)], replication_factor=9)
    broken = replace(spec(bad_config, 1), config={"cleanup.policy": "shred"})
    with pytest.raises(TopicsNotCreated, match=f"{bad_config}: InvalidConfigurationError"):
        await ensure_topics(conn, [broken])
    assert not {too_many, bad_config} & await list_topics(conn)


async def described_config(conn: KafkaConnection, name: str, keys: list[str]) -> dict[str, str]:
    client = clients.admin(conn)
    await client.start()
    try:
        [response] = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(keys, ""))])
    finally:
        await client.close()
    return {entry[0]: entry[1] for entry in response.resources[0][4]}


async def test_an_existing_topic_gets_the_registry_config_once(conn: KafkaConnection, unique: str) -> None:
    """A topic created before a registry change (a raw topic without `segment.ms`: its records in clear outlived
    their retention by up to 7 days) is given the registry's config by `reconcile_configs`; once it agrees, nothing
    changes; a list value in another order agrees; a missing topic is left to `ensure_topics`."""
    name = f"test.reconcile.{unique}"
    old = replace(spec(name, 1), config={"cleanup.policy": "delete", "retention.ms": "259200000"})
    new = replace(old, config={"cleanup.policy": "compact,delete", "retention.ms": "259200000",
                               "segment.ms": str(RAW_SEGMENT_HOURS * 3600 * 1000)})
    try:
        await ensure_topics(conn, [old])
        assert (await described_config(conn, name, ["segment.ms"]))["segment.ms"] == str(7 * 24 * 3600 * 1000)
        assert await reconcile_configs(conn, [new, spec(f"test.missing.{unique}", 1)]) == {
            name: ["cleanup.policy", "segment.ms"]}
        assert await described_config(conn, name, list(new.config)) == new.config
        assert await reconcile_configs(conn, [new]) == {}
        reordered = replace(new, config={**new.config, "cleanup.policy": "delete,compact"})
        assert await reconcile_configs(conn, [reordered]) == {}
    finally:
        await delete_topics(conn, [name])


async def test_a_config_the_broker_refuses_is_an_error_naming_the_topic(conn: KafkaConnection, unique: str) -> None:
    name = f"test.reconcile.bad.{unique}"
    try:
        await ensure_topics(conn, [spec(name, 1)])
        with pytest.raises(TopicConfigsNotReconciled, match=f"{name}: Invalid"):
            await reconcile_configs(conn, [replace(spec(name, 1), config={"cleanup.policy": "shred"})])
    finally:
        await delete_topics(conn, [name])
