"""Topic administration from the registry: create what is missing, refuse what is laid out wrongly.

A service checks its topics at start: a missing one is created with the
registry's partitions and config; an existing one with another partition count
stops the service with a clear error, because the commune key would then map to
other partitions than every other topic's (wrong placement, wrong ownership). An existing
topic's config is compared with the registry's keys: a drift is warned about and counted
(`commune_topic_config_drift`), one a service must not run on (`topic_configs.danger`)
stops it; `reconcile_configs` (`commune-bus topics create`, `make up`) mends them.
Unless told otherwise, a topic gets the cluster's own `default.replication.factor`
(1 on the local broker, 3 on the 3-broker cluster), so a service that creates a
missing topic on a cluster never creates it unreplicated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

from schemas.topics import TOPICS, TopicSpec
from services.common import clients, closing
from services.common.logging import SafeMessage
from services.common.settings import KafkaConnection
from services.common.telemetry import TOPIC_CONFIG_DRIFT
from services.common.topic_configs import Described, Drift, danger, described, drifts, overlaid

DEFAULT_REPLICATION = "default.replication.factor"
FIX = "run `commune-bus topics create` as the admin: it gives existing topics the registry's config"
log = structlog.get_logger("topics")


class TopicLayoutError(SafeMessage):
    """An existing topic does not have the partition count the registry gives it; the message (topic names and
    counts) is logged."""


class TopicConfigError(TopicLayoutError):
    """An existing topic has a config a service must not run on (`topic_configs.danger`): the message names each
    topic and key, its value and the registry's."""


class TopicsNotCreated(SafeMessage, KafkaError):
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


def grouped(refusals: Iterable[str]) -> str:
    """`refusal`s, those for the same reason said once with every topic: `a, b: ErrorName (message)` (an operator's
    `topics create` said the same refusal for each of nine topics, 914 characters)."""
    topics: dict[str, list[str]] = {}
    for said in refusals:
        topic, _, why = said.partition(": ")  # a topic name holds no ": "
        topics.setdefault(why, []).append(topic)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in topics.items())


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


async def topic_error(conn: KafkaConnection, name: str) -> int:
    """Kafka's error code for describing topic `name`: 0 when it exists, 29 (TOPIC_AUTHORIZATION_FAILED) when this
    principal may not describe it, whether or not it exists, else 3 (UNKNOWN_TOPIC_OR_PARTITION) or the broker's."""
    return (await topic_errors(conn, [name]))[name]


async def topic_errors(conn: KafkaConnection, names: Iterable[str]) -> dict[str, int]:
    """`topic_error` of each of `names`, asked at once."""
    ordered = sorted(set(names))
    async with _admin(conn) as client:
        described = await client.describe_topics(ordered)
    unknown = UnknownTopicOrPartitionError.errno
    codes = {t["topic"]: t.get("error_code", 0) or (0 if t["partitions"] else unknown) for t in described}
    return {name: codes.get(name, unknown) for name in ordered}


def check_layout(specs: Iterable[TopicSpec], counts: dict[str, int]) -> None:
    """Raise `TopicLayoutError` naming every topic whose partition count differs from the registry's."""
    wrong = [f"{s.name} has {counts[s.name]} partitions, the registry says {s.partitions}"
             for s in specs if s.name in counts and counts[s.name] != s.partitions]
    if wrong:
        raise TopicLayoutError("topics laid out unlike schemas/topics.py: " + "; ".join(wrong)
                               + " (recreate them, or change the registry and every topic together)")


async def ensure_topics(conn: KafkaConnection, topics: Iterable[TopicSpec] = TOPICS,
                        replication_factor: int | None = None) -> list[str]:
    """Create missing topics with their registry partitions and config, check the others' partitions and config
    (`check_configs`); returns the names created.

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
                raise TopicsNotCreated("the broker refused to create " + grouped(refused))
        await check_configs(client, [t for t in specs if t.name in existing and t.config])
    check_layout(specs, await _settled_counts(conn, [s.name for s in specs]))
    return [t.name for t in wanted]


class TopicConfigsNotReconciled(SafeMessage, KafkaError):
    """The broker refused to describe or alter a registry topic's config (no DescribeConfigs/AlterConfigs right,
    an invalid value); the message names each topic and its error."""


async def _configs(client: AIOKafkaAdminClient, names: Iterable[str]) -> tuple[dict[str, Described], list[str]]:
    """Each topic's whole described config, and `topic: Error (message)` for each the broker would not describe (a
    missing topic is left out of both)."""
    ordered = sorted(set(names))
    if not ordered:
        return {}, []
    configs: dict[str, Described] = {}
    refused: list[str] = []
    for response in await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in ordered]):
        for error_code, message, _type, name, entries in response.resources:
            if error_code == UnknownTopicOrPartitionError.errno:
                continue
            if error_code:
                refused.append(refusal(name, error_code, message))
            else:
                configs[name] = described(entries, response.API_VERSION)
    return configs, refused


async def check_configs(client: AIOKafkaAdminClient, specs: Iterable[TopicSpec]) -> list[Drift]:
    """Compare existing topics' configs with the registry's keys; returns the drifts found.

    Each drifted topic is one warning (every key with its value and the registry's: topic configs hold no personal
    data) and `commune_topic_config_drift{topic}` its number of keys; a drift a service must not run on
    (`topic_configs.danger`) raises `TopicConfigError`. A principal without the DescribeConfigs right is said once
    and the service goes on: the check is a guard, not a precondition.
    """
    by_name = {s.name: s for s in specs}
    configs, refused = await _configs(client, by_name)
    if refused:
        log.warning("topics.configs_not_checked", refused=refused)
    found: list[Drift] = []
    fatal: list[str] = []
    for name, config in sorted(configs.items()):
        spec = by_name[name]
        drifted = drifts(spec, config.values)
        TOPIC_CONFIG_DRIFT.labels(topic=name).set(len(drifted))
        if drifted:
            log.warning("topics.config_drift", topic=name, fix=FIX,
                        keys={d.key: {"actual": d.actual, "wanted": d.wanted} for d in drifted})
        fatal += [f"{d} ({why})" for d in drifted if (why := danger(d, spec.kind))]
        found += drifted
    if fatal:
        raise TopicConfigError("topics configured unlike schemas/topics.py, which no service may run on: "
                               + "; ".join(fatal) + f" ({FIX})")
    return found


async def reconcile_configs(conn: KafkaConnection, topics: Iterable[TopicSpec] = TOPICS) -> list[Drift]:
    """Give each existing topic the registry's config keys, keeping the keys set on it by hand; returns the drifts
    it mended (each key with its value before).

    `ensure_topics` sets a topic's config when it creates the topic, never after: a registry change (a raw topic's
    `segment.ms`, a retention) reaches an existing cluster only through here (`commune-bus topics create`,
    `topics_cli` for `make up`; as admin). aiokafka has no IncrementalAlterConfigs, and Kafka's AlterConfigs
    replaces a topic's whole dynamic config: so the keys set on each topic are read first and sent back with the
    registry's over them (`topic_configs.overlaid`). Race: a key set on a topic by someone else between that read
    and the alteration goes back to the broker's default; run it when nobody else alters topic configs. A topic
    that holds a key the broker will not show (a sensitive one) is not altered but refused: it would lose that key.
    Missing topics are skipped (`ensure_topics` creates them); a refusal raises `TopicConfigsNotReconciled` after the
    other topics are altered.
    """
    specs = {t.name: t for t in topics if t.config}
    async with _admin(conn) as client:
        configs, refused = await _configs(client, specs)
        mended = {name: found for name, config in configs.items() if (found := drifts(specs[name], config.values))}
        alterations: list[ConfigResource] = []
        for name in sorted(mended):
            own = configs[name].own
            hidden = sorted(k for k, v in own.items() if v is None and k not in specs[name].config)
            if hidden:
                refused.append(f"{name}: {', '.join(hidden)} set but not shown by the broker (sensitive): give it "
                               "the registry's keys by hand with kafka-configs --alter --add-config")
                continue
            kept = {k: v for k, v in own.items() if v is not None}
            alterations.append(ConfigResource(ConfigResourceType.TOPIC, name, overlaid(specs[name], kept)))
        altered = {resource.name for resource in alterations}
        if alterations:
            for response in await client.alter_configs(alterations):
                for error_code, message, _type, name in response.resources:
                    if error_code:
                        refused.append(refusal(name, error_code, message))
                        altered.discard(name)
    if refused:
        raise TopicConfigsNotReconciled("the broker refused the registry config of " + grouped(refused))
    return [drift for name in sorted(altered) for drift in mended[name]]


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


async def described_configs(conn: KafkaConnection, names: Iterable[str]) -> dict[str, Described]:
    """Each existing topic's whole described config (defaults included); a topic the broker would not describe (no
    DescribeConfigs right) is warned about once and left out: such a check is a guard, not a precondition."""
    async with _admin(conn) as client:
        configs, refused = await _configs(client, names)
    if refused:
        log.warning("topics.configs_not_checked", refused=refused)
    return configs


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
