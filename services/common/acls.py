"""Who may do what on the cluster: least-privilege ACLs derived from the topic and the source registries.

Each service principal reads and writes exactly the topics of `schemas.topics` its
code uses, joins only its own consumer groups and writes only under its own
transactional-id prefixes. Each registered source (`infra/sources.yaml`) has a
principal `source-<entry id>` that writes only the raw topics bound to it, one per
family its entry lists (`services.sources.topics`, ADR 0018), so its identity is the
topic's. Each registered subscriber (`subscribers` in the same file) has a principal `subscriber-<id>` that reads
the published topics (canonical events, notification statuses, snapshots) in consumer groups
`commune-bus.subscriber.<id>.…`, and writes nothing. Nobody but the super users (`admin` for set-up and tests,
`broker` between brokers) creates topics, reads raw topics other than intake, or alters ACLs. The
broker denies anything not allowed here (`allow.everyone.if.no.acl.found=false`,
`infra/kafka/server-secure.properties`).

`python -m services.common.acls [--namespace NS] [--sources FILE]` prints the table;
`--apply` creates the SCRAM users that are missing and the ACLs (`services.common.acls_apply`).
Pure: no Kafka here. A new topic in the registry must be given to a role below
(`tests/security/test_acl_table.py` fails until it is).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from schemas.topics import (
    CANONICAL,
    DLQ_INTAKE,
    DLQ_NOTIFY,
    DLQ_REPLAYED,
    GATEWAY_CLAIMS,
    INTAKE_DEDUP,
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    METRICS_CHANGELOG,
    METRICS_SNAPSHOTS,
    NOTIFY_ALERTS,
    NOTIFY_DEADLINES,
    NOTIFY_ERASURE_GROUPS,
    NOTIFY_LEDGER,
    NOTIFY_REPLAYS,
    NOTIFY_STATUS,
    PRIVACY_AUDIT,
    PRIVACY_ERASURES,
    RAW,
    Group,
    TopicSpec,
    TransactionalId,
    group_id,
    namespaced,
)
from services.sources.registry import RegistryFileError, SourceRegistry, load_registry
from services.sources.topics import bound_topic, principal

SOURCES_FILE = Path(__file__).resolve().parents[2] / "infra/sources.yaml"
ADMIN = "admin"
"""Super user: creates topics and ACLs, runs the tests. Never given to a service."""
BROKER = "broker"
"""Super user the brokers authenticate to each other with."""
SUBSCRIBER_PREFIX = "subscriber-"
"""A downstream application's principal is `subscriber-<its registry id>`."""


class Op(StrEnum):
    """ACL operations used here (READ and WRITE imply DESCRIBE on the broker, not DESCRIBE_CONFIGS)."""

    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DESCRIBE = "DESCRIBE"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"


class Resource(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class Pattern(StrEnum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL: `principal` may `operation` on `resource` `name` (literal or prefix), from any host."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Op

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"


@dataclass(frozen=True)
class Role:
    """What one principal's code does on Kafka, in registry terms."""

    principal: str
    reads: tuple[TopicSpec, ...] = ()
    writes: tuple[TopicSpec, ...] = ()
    groups: tuple[Group, ...] = ()
    transactional: tuple[TransactionalId, ...] = ()
    group_prefixes: tuple[str, ...] = ()
    """Consumer groups it may join by prefix (a subscriber names its own groups)."""
    own_prefixes: tuple[Group, ...] = field(default=())
    """Faust apps create, read and write their internal topics `<app id>-...` (changelogs, the assignor's leader)."""
    checks_topics: bool = False
    """Its code calls `admin.ensure_topics`, which compares its topics' configs with the registry's: it may describe
    the configs (retention, limits: no data) of the topics it reads or writes."""

    def bindings(self, namespace: str) -> Iterator[Binding]:
        def topic(spec: TopicSpec, op: Op) -> Binding:
            return Binding(self.principal, Resource.TOPIC, namespaced(spec.name, namespace), Pattern.LITERAL, op)

        yield from (topic(t, Op.READ) for t in self.reads)
        yield from (topic(t, Op.WRITE) for t in self.writes)
        if self.checks_topics:
            used = {t.name: t for t in (*self.reads, *self.writes)}
            yield from (topic(t, Op.DESCRIBE_CONFIGS) for t in used.values())
        for g in self.groups:
            yield Binding(self.principal, Resource.GROUP, group_id(g, namespace), Pattern.LITERAL, Op.READ)
        for prefix in self.group_prefixes:
            yield Binding(self.principal, Resource.GROUP, namespaced(prefix, namespace), Pattern.PREFIXED, Op.READ)
        for t in self.transactional:  # a writer appends ".<instance>" (schemas.topics.transactional_id)
            yield Binding(self.principal, Resource.TRANSACTIONAL_ID, namespaced(f"{t.value}.", namespace),
                          Pattern.PREFIXED, Op.WRITE)
        for app in self.own_prefixes:
            prefix = f"{group_id(app, namespace)}-"
            for op in (Op.CREATE, Op.READ, Op.WRITE, *([Op.DESCRIBE_CONFIGS] if self.checks_topics else [])):
                yield Binding(self.principal, Resource.TOPIC, prefix, Pattern.PREFIXED, op)


ALL_RAW = tuple(RAW.values())
ALL_CANONICAL = tuple(CANONICAL.values())
TRACED = (*ALL_CANONICAL, DLQ_INTAKE, NOTIFY_STATUS, DLQ_NOTIFY)
"""What `commune-bus trace` and the gateway's trace endpoint read besides the raw topics (all sealed, ADR 0015)."""
SHARED_TRANSACTIONAL = {TransactionalId.ERASE}
"""The CLI and the gateway both erase under this prefix, each erasure with an id of its own
(`privacy.erase.erasure_transactional_id`), so neither fences the other."""


def service_roles(registry: SourceRegistry) -> tuple[Role, ...]:
    """The services' roles, each checking its topics' configs at start; intake's reads include every source's bound
    raw topics (ADR 0018)."""
    bound = tuple(bound_topic(f, entry) for entry in registry.sources for f in entry.families)
    return tuple(replace(role, checks_topics=True) for role in (
        # intake creates applicants' data keys (and dead letters' day keys) as it encrypts what it publishes, and
        # writes the raw topics it reads: a record off its commune's partition (unkeyed, or placed by another
        # partitioner than Kafka's: kcat's default) is moved there, on the same topic, in the same transaction
        Role("intake", reads=(*ALL_RAW, *bound, INTAKE_DEDUP, KEYS_APPLICANTS, KEYS_DEAD_LETTERS),
             writes=(*ALL_CANONICAL, *ALL_RAW, *bound, DLQ_INTAKE, INTAKE_DEDUP, KEYS_APPLICANTS, KEYS_DEAD_LETTERS),
             groups=(Group.INTAKE,), transactional=(TransactionalId.INTAKE,)),
        # notify opens the personal data it needs with the key store's keys; it never creates nor erases one
        # it tells the webhook subscribers that receive applicants' data of each erasure, in groups of its own, one
        # per such subscriber (ADR 0035)
        Role("notify", reads=(*ALL_CANONICAL, NOTIFY_ALERTS, NOTIFY_REPLAYS, NOTIFY_LEDGER, NOTIFY_DEADLINES,
                              KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_ERASURES),
             writes=(NOTIFY_STATUS, DLQ_NOTIFY, NOTIFY_LEDGER, NOTIFY_DEADLINES, NOTIFY_ALERTS),
             groups=(Group.NOTIFY, Group.NOTIFY_DEADLINES), own_prefixes=(Group.NOTIFY_DEADLINES,),
             group_prefixes=(NOTIFY_ERASURE_GROUPS,)),
        Role("metrics", reads=(*ALL_CANONICAL, METRICS_CHANGELOG), writes=(METRICS_CHANGELOG, METRICS_SNAPSHOTS),
             groups=(Group.METRICS,), transactional=(TransactionalId.METRICS,)),
        # the gateway authenticates sources itself (API key + HMAC) and writes the shared raw topics, with its
        # Idempotency-Keys and nonces shared by every instance; its operators' endpoints trace a record (metadata of
        # the sealed canonical, dead-letter and status topics; not the raw ones) and erase an applicant's keys
        # an erasure (POST /v1/erasures) tombstones the subject's keys on both key topics (a dead letter's applicant
        # key expires with it, on commune.keys.deadletters)
        Role("gateway", reads=(GATEWAY_CLAIMS, *TRACED, KEYS_APPLICANTS, KEYS_DEAD_LETTERS),
             writes=(*ALL_RAW, GATEWAY_CLAIMS, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES),
             transactional=(TransactionalId.GATEWAY, TransactionalId.ERASE)),
        # commune-bus publish / dlq list|replay / erase / trace / tail of the sealed topics; raw input stays intake's
        # (dlq list and replay open sealed dead letters with the key store: applicants' keys and the day keys);
        # keys rewrap writes both key topics again, each key under the current KEK (it could already tombstone keys)
        # notify-dlq replay writes a dead-lettered notification, under a new id, to commune.notify.replays, an input
        # of notify's (ADR 0033)
        Role("operator", reads=(*TRACED, DLQ_REPLAYED, METRICS_SNAPSHOTS, KEYS_APPLICANTS, KEYS_DEAD_LETTERS,
                                PRIVACY_AUDIT, PRIVACY_ERASURES),
             writes=(*ALL_RAW, DLQ_REPLAYED, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES,
                     NOTIFY_REPLAYS),
             transactional=(TransactionalId.DLQ_REPLAY, TransactionalId.ERASE, TransactionalId.KEYS_REWRAP)),
        # demo and tests only (make demo, bench): simulated traffic of many sources on the shared raw topics, which
        # intake checks against the registry's `simulator` entry; a production cluster has no such user
        Role("simulator", writes=ALL_RAW),
    ))


PUBLISHED = (*ALL_CANONICAL, NOTIFY_STATUS, METRICS_SNAPSHOTS, PRIVACY_ERASURES)
"""What a downstream application may read: the canonical events, the notifications' statuses, the communes'
snapshots, the erasures' notices (ADR 0035). Not the raw topics (clear personal data), the dead letters, the key
topics nor any service's state."""


def subscriber_roles(registry: SourceRegistry) -> tuple[Role, ...]:
    """One role per registered subscriber: read the published topics, in consumer groups of its own
    (`subscriber_groups`); write nothing (downstream audit: the only principal that could read the canonical topics
    was the operator, who may publish as any source and erase applicants, and could not join a consumer group)."""
    return tuple(Role(f"{SUBSCRIBER_PREFIX}{entry.id}", reads=PUBLISHED, group_prefixes=(subscriber_groups(entry.id),))
                 for entry in registry.subscribers)


def subscriber_groups(subscriber_id: str) -> str:
    """The prefix of a subscriber's consumer group ids (namespaced in tests): under the project's `commune`, as every
    name the ACLs manage, so taking a subscriber out of the registry revokes its groups too (`acls_apply`)."""
    return f"commune-bus.subscriber.{subscriber_id}."


def source_roles(registry: SourceRegistry) -> tuple[Role, ...]:
    """One role per registered source: write its bound raw topic of each family its entry allows, nothing else
    (not the shared raw topics: there a record's claimed source is not bound to its writer)."""
    return tuple(Role(principal(entry), writes=tuple(bound_topic(f, entry) for f in entry.families))
                 for entry in registry.sources)


def roles(registry: SourceRegistry) -> tuple[Role, ...]:
    return (*service_roles(registry), *source_roles(registry), *subscriber_roles(registry))


def principals(registry: SourceRegistry) -> list[str]:
    """Every SCRAM user the local cluster has: the super users, then one per role."""
    return [ADMIN, BROKER, *(r.principal for r in roles(registry))]


def bindings(registry: SourceRegistry, namespace: str = "") -> list[Binding]:
    """Every ACL of the cluster for topics under `namespace` ("" in production), sorted, without duplicates."""
    return sorted({b for role in roles(registry) for b in role.bindings(namespace)})


def table(rows: Iterable[Binding]) -> str:
    """The ACLs as an aligned text table, one line per binding."""
    lines = [("PRINCIPAL", "OPERATION", "RESOURCE", "PATTERN", "NAME")]
    lines += [(b.principal, b.operation.value, b.resource.value, b.pattern.value, b.name) for b in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:4], widths, strict=True)) + "  " + line[4]
                     for line in lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.common.acls", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="", help="topic prefix (tests); none in production")
    parser.add_argument("--sources", type=Path, default=SOURCES_FILE, help="source registry (infra/sources.yaml)")
    parser.add_argument("--principals", action="store_true", help="print the SCRAM user names only")
    parser.add_argument("--apply", action="store_true",
                        help="create missing SCRAM users (passwords from --secrets) and the ACLs, and delete the "
                             "managed "
                             "ACLs the table no longer holds, as KAFKA_* says")
    parser.add_argument("--secrets", type=Path, help="folder of <principal>.password files (infra/kafka/secrets)")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.sources)
    except (RegistryFileError, OSError) as exc:  # one line, not a traceback (review)
        raise SystemExit(f"acls: {exc}") from None
    if args.principals:
        print("\n".join(principals(registry)))  # noqa: T201 - the command's output
        return
    rows = bindings(registry, args.namespace)
    print(table(rows))  # noqa: T201 - the command's output
    if args.apply:
        import asyncio

        from services.common.acls_apply import apply
        from services.common.refused import settings_checked
        from services.common.settings import KafkaConnection

        with settings_checked("acls"):
            conn = KafkaConnection()
        asyncio.run(apply(conn, rows, principals(registry), args.secrets, args.namespace))


if __name__ == "__main__":
    main()
