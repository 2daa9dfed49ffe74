"""Topic layout check of services/common/admin.py on the real broker: missing topics created, wrong ones refused,
drifted configs warned about, counted or refused, existing ones given the registry's config."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from schemas.topics import DLQ_INTAKE, METRICS_CHANGELOG, RAW_DOSSIER, RAW_SEGMENT_HOURS, Kind, TopicSpec
from services.common import clients
from services.common.admin import (
    TopicConfigError,
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
from services.common.topic_configs import Drift
from tests.common.conftest import NewTopicOf
from tests.waiting import eventually_async

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
        assert await reconcile_configs(conn, [new, spec(f"test.missing.{unique}", 1)]) == [
            Drift(name, "cleanup.policy", "delete", "compact,delete"),
            Drift(name, "segment.ms", str(7 * 24 * 3600 * 1000), new.config["segment.ms"])]
        # the broker applies an alteration through its metadata log: a describe right after may still see the old
        # config (a fresh-clone CI run saw it once)
        async def applied() -> bool:
            return await described_config(conn, name, list(new.config)) == new.config

        await eventually_async(applied, timeout=30, what="the registry's config applied")
        assert await reconcile_configs(conn, [new]) == []
        reordered = replace(new, config={**new.config, "cleanup.policy": "delete,compact"})
        assert await reconcile_configs(conn, [reordered]) == []
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


def drift_gauge(topic: str) -> float | None:
    return REGISTRY.get_sample_value("commune_topic_config_drift", {"topic": topic})


async def test_a_drifted_config_is_warned_about_and_counted_at_start(conn: KafkaConnection, unique: str) -> None:
    """A topic created before a registry change (another retention, no `segment.ms`): `ensure_topics`, which every
    service calls at start, logs one warning naming the topic and each key with both values and counts 2 drifted
    keys in commune_topic_config_drift, and goes on; once mended, it counts 0 and says nothing."""
    name = f"test.drift.{unique}"
    old = replace(spec(name, 1), config={"retention.ms": "3600000"})
    new = replace(old, config={"retention.ms": str(24 * 3600 * 1000), "segment.ms": str(6 * 3600 * 1000)})
    try:
        await ensure_topics(conn, [old])
        with capture_logs() as logs:
            assert await ensure_topics(conn, [new]) == []
        assert [(e["log_level"], e["topic"], e["keys"]) for e in logs if e["event"] == "topics.config_drift"] == [
            ("warning", name, {"retention.ms": {"actual": "3600000", "wanted": str(24 * 3600 * 1000)},
                               "segment.ms": {"actual": str(7 * 24 * 3600 * 1000), "wanted": str(6 * 3600 * 1000)}})]
        assert drift_gauge(name) == 2
        await reconcile_configs(conn, [new])
        with capture_logs() as logs:
            await ensure_topics(conn, [new])
        assert [e for e in logs if e["event"].startswith("topics.")] == []
        assert drift_gauge(name) == 0
    finally:
        await delete_topics(conn, [name])


async def test_a_state_topic_that_deletes_and_a_dead_letter_topic_below_its_limit_refuse_the_start(
        conn: KafkaConnection, unique: str) -> None:
    """The metrics state changelog pre-created `delete` with a 1-hour retention (its states gone after an hour, a
    restore then misses them) and intake's dead-letter topic with the old 10 MiB limit (a dead letter at the limit
    refused, intake's transaction aborted run after run): `ensure_topics` refuses to start, naming each topic, key,
    value and the registry's; `reconcile_configs` (`commune-bus topics create`) mends both and the start passes."""
    state = replace(METRICS_CHANGELOG, name=f"test.state.{unique}")
    letters = replace(DLQ_INTAKE, name=f"test.letters.{unique}")
    try:
        await ensure_topics(conn, [replace(state, config={"cleanup.policy": "delete", "retention.ms": "3600000"}),
                                   replace(letters, config={**letters.config, "max.message.bytes": "10485760"})])
        with pytest.raises(TopicConfigError) as refused:
            await ensure_topics(conn, [state, letters])
        assert f"{state.name}: cleanup.policy is delete, the registry says compact" in str(refused.value)
        wanted = letters.config["max.message.bytes"]
        assert f"{letters.name}: max.message.bytes is 10485760, the registry says {wanted}" in str(refused.value)
        assert "commune-bus topics create" in str(refused.value)
        assert {d.key for d in await reconcile_configs(conn, [state, letters])} == {"cleanup.policy",
                                                                                   "max.message.bytes"}

        async def starts() -> bool:  # the broker applies an AlterConfigs a moment later (2 of 12 runs saw the old one)
            try:
                return await ensure_topics(conn, [state, letters]) == []
            except TopicConfigError:
                return False

        await eventually_async(starts, timeout=30, interval=0.2, what="the start passing on the mended configs")
    finally:
        await delete_topics(conn, [state.name, letters.name])


async def test_reconciling_keeps_a_key_set_by_hand(conn: KafkaConnection, unique: str) -> None:
    """A `retention.bytes` an operator set on a topic survives `reconcile_configs`: Kafka's AlterConfigs replaces a
    topic's whole dynamic config, so before it went back to the broker's default (-1, no size bound)."""
    name = f"test.by-hand.{unique}"
    registry = replace(spec(name, 1), config={"retention.ms": str(24 * 3600 * 1000)})
    try:
        await ensure_topics(conn, [replace(registry, config={"retention.ms": "3600000",
                                                             "retention.bytes": "5000000000"})])
        assert [d.key for d in await reconcile_configs(conn, [registry])] == ["retention.ms"]
        wanted = {"retention.ms": str(24 * 3600 * 1000), "retention.bytes": "5000000000"}

        async def reconciled() -> bool:  # the broker applies an AlterConfigs a moment later (CI saw the old value)
            seen = await described_config(conn, name, list(wanted))
            assert seen == wanted, seen  # the last one said if it never holds: a key set by hand lost shows here
            return True

        await eventually_async(reconciled, timeout=30, interval=0.2, what="the mended config, the key kept")
    finally:
        await delete_topics(conn, [name])


async def test_a_raw_topic_stamps_records_with_the_brokers_time_not_the_senders(conn: KafkaConnection,
                                                                                  unique: str) -> None:
    """A raw topic made from the registry's spec keeps the broker's append time as each record's timestamp: a source
    whose PC clock says 2076 (or 1970) no longer decides when its partition's records are deleted (time audit: a
    2076 record kept every record after it, in clear, for ever; a 1970 one was deleted minutes after it was
    written). Before: the record kept the time its producer gave."""
    name = f"test.raw.{unique}"
    raw = replace(RAW_DOSSIER, name=name, partitions=1)
    producer = clients.producer(conn, client_id="test-raw-stamps")
    consumer = clients.consumer(conn, client_id="test-raw-stamps")
    try:
        await ensure_topics(conn, [raw])
        await producer.start()
        before_ms = time.time() * 1000
        for stamp in (3_372_000_000_000, 86_400_000):  # 2076-11-08 and 1970-01-02
            await producer.send_and_wait(name, b"{}", timestamp_ms=stamp)
        after_ms = time.time() * 1000
        await consumer.start()
        consumer.assign([TopicPartition(name, 0)])
        await consumer.seek_to_beginning(TopicPartition(name, 0))
        records = []
        while len(records) < 2:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "the two records did not come back"
            records += [r for rs in batch.values() for r in rs]
        assert [r.timestamp_type for r in records] == [1, 1]  # LOG_APPEND_TIME
        assert all(before_ms - 60_000 <= r.timestamp <= after_ms + 60_000 for r in records), records
    finally:
        await producer.stop()
        await consumer.stop()
        await delete_topics(conn, [name])
