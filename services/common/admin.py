"""Topic administration from the registry: create what is missing, refuse what is laid out wrongly.

A service checks its topics at start: a missing one is created with the
registry's partitions and config; an existing one with another partition count
stops the service with a clear error, because the commune key would then map to
other partitions than every other topic's (wrong placement, wrong ownership).
Unless told otherwise, a topic gets the cluster's own `default.replication.factor`
(1 on the local broker, 3 on the 3-broker cluster), so a service that creates a
missing topic on a cluster never creates it unreplicated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

from schemas.topics import TOPICS, TopicSpec
from services.common import clients, closing
from services.common.settings import KafkaConnection

DEFAULT_REPLICATION = "default.replication.factor"


class TopicLayoutError(Exception):
    """An existing topic does not have the partition count the registry gives it."""


class TopicsNotCreated(KafkaError):
    """The broker refused to create topics (no Create permission, a replication factor above the brokers up, an
    invalid config): a Kafka error, so a service's run ends and is tried again; the message names each topic and
    its error. aiokafka's `create_topics` returns such refusals in its response instead of raising."""


def creation_errors(response: object) -> list[str]:
    """`topic: ErrorName (message)` for each topic a CreateTopics response refuses, other than one that exists
    already (another worker won the race: the registry is the same for both)."""
    refused = []
    for entry in getattr(response, "topic_errors", []):
        topic, code = entry[0], entry[1]
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        refused.append(refusal(topic, code, entry[2] if len(entry) > 2 else None))
    return refused


def refusal(topic: str, code: int, message: str | None) -> str:
    """`topic: ErrorName (message)`: how a broker's refusal about one topic is reported."""
    return f"{topic}: {for_code(code).__name__}" + (f" ({message})" if message else "")


@asynccontextmanager
async def _admin(conn: KafkaConnection) -> AsyncIterator[AIOKafkaAdminClient]:
    client = clients.admin(conn)
    await client.start()
    try:
        yield client
    finally:  # bounded, and a cancellation that reaches aiokafka's close is not swallowed there
        await closing.close_within("admin", "admin client", client.close)


async def partition_counts(conn: KafkaConnection, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each existing topic among `names` (missing topics are left out)."""
    async with _admin(conn) as client:
        described = await client.describe_topics(sorted(set(names)))
    return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0 and t["partitions"]}


def check_layout(specs: Iterable[TopicSpec], counts: dict[str, int]) -> None:
    """Raise `TopicLayoutError` naming every topic whose partition count differs from the registry's."""
    wrong = [f"{s.name} has {counts[s.name]} partitions, the registry says {s.partitions}"
             for s in specs if s.name in counts and counts[s.name] != s.partitions]
    if wrong:
        raise TopicLayoutError("topics laid out unlike schemas/topics.py: " + "; ".join(wrong)
                               + " (recreate them, or change the registry and every topic together)")


async def ensure_topics(conn: KafkaConnection, topics: Iterable[TopicSpec] = TOPICS,
                        replication_factor: int | None = None) -> list[str]:
    """Create missing topics with their registry partitions and config, check the others; returns the names created.

    `replication_factor` None: the cluster's `default.replication.factor` (see `default_replication_factor`).
    """
    specs = list(topics)
    async with _admin(conn) as client:
        existing = set(await client.list_topics())
        wanted = [t for t in specs if t.name not in existing]
        if wanted:
            replicas = replication_factor or await default_replication_factor(client)
            new = [NewTopic(t.name, t.partitions, replicas, topic_configs=dict(t.config)) for t in wanted]
            # a topic another worker created meanwhile comes back as TOPIC_ALREADY_EXISTS, skipped there
            refused = creation_errors(await client.create_topics(new))
            if refused:
                raise TopicsNotCreated("the broker refused to create " + "; ".join(refused))
    check_layout(specs, await _settled_counts(conn, [s.name for s in specs]))
    return [t.name for t in wanted]


class TopicConfigsNotReconciled(KafkaError):
    """The broker refused to describe or alter a registry topic's config (no DescribeConfigs/AlterConfigs right,
    an invalid value); the message names each topic and its error."""


def _normalised(value: str | None) -> str | None:
    """A config value as compared: a list (`compact,delete`) in any order is the same list."""
    return None if value is None else ",".join(sorted(part.strip() for part in value.split(",")))


async def reconcile_configs(conn: KafkaConnection, topics: Iterable[TopicSpec] = TOPICS) -> dict[str, list[str]]:
    """Make each existing topic's registry config keys what the registry says; returns topic -> the keys it changed.

    `ensure_topics` sets a topic's config when it creates the topic, never after: a registry change (a raw topic's
    `segment.ms`, a retention) reached new clusters only. This is run by `topics_cli` (as admin, `make up`). The
    alteration is Kafka's AlterConfigs, which sets a topic's whole dynamic config: another key set on such a topic
    by hand goes back to the broker's default (the registry is the one source of topic configs). Missing topics are
    skipped (`ensure_topics` creates them); a refusal raises `TopicConfigsNotReconciled`.
    """
    specs = {t.name: t for t in topics if t.config}
    if not specs:
        return {}
    async with _admin(conn) as client:
        described = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(
            spec.config, "")) for name, spec in specs.items()])
        changed: dict[str, list[str]] = {}
        refused: list[str] = []
        for response in described:
            for error_code, message, _type, name, entries in response.resources:
                if error_code == UnknownTopicOrPartitionError.errno:
                    continue
                if error_code:
                    refused.append(refusal(name, error_code, message))
                    continue
                current = {entry[0]: entry[1] for entry in entries}
                keys = [k for k, v in specs[name].config.items() if _normalised(current.get(k)) != _normalised(v)]
                if keys:
                    changed[name] = keys
        if changed:
            responses = await client.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, dict(specs[name].config)) for name in sorted(changed)])
            for response in responses:
                for error_code, message, _type, name in response.resources:
                    if error_code:
                        refused.append(refusal(name, error_code, message))
    if refused:
        raise TopicConfigsNotReconciled("the broker refused the registry config of " + "; ".join(refused))
    return changed


async def default_replication_factor(client: AIOKafkaAdminClient) -> int:
    """The cluster's `default.replication.factor`, as one of its brokers reports it.

    aiokafka's CreateTopics (v3 at most) cannot ask the broker to apply its default (-1 needs v4), so it is read
    and passed explicitly. If it cannot be read (an ACL may deny DescribeConfigs), one replica per broker, at most 3.
    """
    brokers = (await client.describe_cluster())["brokers"]
    for broker in brokers:  # any broker answers for the cluster's default; one just restarted may not yet
        resource = ConfigResource(ConfigResourceType.BROKER, str(broker["node_id"]), {DEFAULT_REPLICATION: ""})
        try:
            responses = await client.describe_configs([resource])
        except KafkaError:
            continue
        for error_code, _message, _type, _name, entries in responses[0].resources:
            values = [entry[1] for entry in entries if entry[0] == DEFAULT_REPLICATION]
            if error_code == 0 and values and str(values[0]).isdigit():
                return int(values[0])
    return min(3, max(1, len(brokers)))


async def cluster_replication_factor(conn: KafkaConnection) -> int:
    """The replication factor topics get on this cluster (for clients that create their own, e.g. faust's)."""
    async with _admin(conn) as client:
        return await default_replication_factor(client)


async def _settled_counts(conn: KafkaConnection, names: list[str], attempts: int = 20) -> dict[str, int]:
    """Partition counts once the metadata of just-created topics has reached the broker answering."""
    counts: dict[str, int] = {}
    for _ in range(attempts):
        counts = await partition_counts(conn, names)
        if len(counts) == len(set(names)):
            break
        await asyncio.sleep(0.1)
    return counts


async def list_topics(conn: KafkaConnection) -> set[str]:
    async with _admin(conn) as client:
        return set(await client.list_topics())


async def delete_topics(conn: KafkaConnection, names: Iterable[str]) -> None:
    """Delete topics (benchmarks remove their namespaces: thousands of idle partitions slow a broker down)."""
    ordered = sorted(names)
    if not ordered:
        return
    async with _admin(conn) as client:
        await client.delete_topics(ordered)
