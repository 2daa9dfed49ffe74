"""Raw topics bound to a source: where a source's own Kafka principal writes, so its identity is the topic's.

On Kafka a record says which source it is (`ce_source`, a `source` header), and
anyone who may write a raw topic can say anything. A registered source instead
writes `commune.raw.<family>.src.<entry id>`, one topic per family its entry
allows, and only its principal (`User:source-<entry id>`) may write there
(the ACLs of `services.common.acls`). intake reads these topics beside the shared
raw topics and takes the entry from the topic: a record whose `source` is not
one of that entry's URIs, or whose commune or family the entry does not cover,
is dead-lettered as `unauthorised_source` (ADR 0018). The shared raw topics stay
for writers that authenticate sources themselves (the gateway, an operator's
replay), which no source principal may write.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from schemas.deadletter import Reason, Rejection
from schemas.events import Family
from schemas.topics import RAW, TopicSpec, namespaced
from services.sources.registry import Source, SourceRegistry, is_allowed

BOUND = ".src."
"""`commune.raw.<family>` + BOUND + `<entry id>`."""


def bound_topic(family: Family, entry: Source, namespace: str = "") -> TopicSpec:
    """The raw topic of `family` that only `entry`'s principal writes (partitions and config of the shared one)."""
    spec = RAW[family]
    return replace(spec, name=raw_topic(family, entry.id, namespace),
                   description=f"{spec.description} Written only by source {entry.id} (its principal).")


def raw_topic(family: Family, entry_id: str | None, namespace: str = "") -> str:
    """Where `family`'s raw records are written: the topic bound to the entry `entry_id`, or the shared one (None)."""
    name = RAW[family].name
    return namespaced(name if entry_id is None else f"{name}{BOUND}{entry_id}", namespace)


PRINCIPAL_PREFIX = "source-"


def entry_of(user: str | None) -> str | None:
    """The registry id of a source's Kafka user name (`principal`'s inverse); None for any other user."""
    if user is None or not user.startswith(PRINCIPAL_PREFIX) or len(user) == len(PRINCIPAL_PREFIX):
        return None
    return user[len(PRINCIPAL_PREFIX):]


def bound_topics(registry: SourceRegistry, namespace: str = "") -> dict[str, tuple[Family, Source]]:
    """Every bound raw topic of the registry: topic name -> (family, entry)."""
    return {bound_topic(f, entry, namespace).name: (f, entry) for entry in registry.sources for f in entry.families}


def principal(entry: Source) -> str:
    """The Kafka user name of a registered source (SCRAM user, ACL principal `User:<this>`)."""
    return f"{PRINCIPAL_PREFIX}{entry.id}"


def entry_policy(entry: Source, source: str, family: Family, commune: str) -> Rejection | None:
    """The source policy on a topic bound to `entry`: the record's source must be one of the entry's own."""
    if not entry.owns(source):
        return Rejection(reason=Reason.UNAUTHORISED_SOURCE, field="source",
                         message=f"source is not one of those of {entry.id}, the only writer of this topic")
    if family not in entry.families:
        return Rejection(reason=Reason.UNAUTHORISED_SOURCE, field="type",
                         message=f"{entry.id} may not publish {family.value} events")
    if not entry.covers(commune):
        return Rejection(reason=Reason.UNAUTHORISED_SOURCE, field="commune",
                         message=f"{entry.id} may not publish for commune {commune}")
    return None


def policies(registry: SourceRegistry, namespace: str = "") -> dict[str, partial[Rejection | None]]:
    """The source policy of each raw topic intake reads: the registry's rule on the shared topics, the entry's on
    its bound topics."""
    shared = {namespaced(RAW[f].name, namespace): partial(is_allowed, registry) for f in Family}
    bound = {topic: partial(entry_policy, entry) for topic, (_, entry) in bound_topics(registry, namespace).items()}
    return {**shared, **bound}
