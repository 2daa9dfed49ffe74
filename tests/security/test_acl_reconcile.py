"""Applying the ACL table reconciles: a source taken out of the registry loses its rights at the next apply, and
nothing outside the applied namespace's scope (another namespace, other principals) is touched."""

from __future__ import annotations

import asyncio

import pytest

from schemas.events import Family
from services.common.acls import SOURCES_FILE, bindings, principals
from services.common.acls_apply import apply
from services.common.admin import ensure_topics
from services.sources.registry import SourceRegistry, load_registry
from services.sources.topics import bound_topic
from tests.security.conftest import SecureBroker
from tests.security.probes import writable
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
REGISTRY = load_registry(SOURCES_FILE)
REMOVED, KEPT = "thuong-lam-one-stop", "lang-son-dossiers"


def dossier_topic(entry_id: str, namespace: str) -> str:
    return bound_topic(Family.DOSSIER, REGISTRY.by_id[entry_id], namespace).name


async def test_a_source_taken_out_of_the_registry_loses_its_rights(secure_broker: SecureBroker, unique: str) -> None:
    """After an apply without the entry, its principal writes nothing in that namespace; another source still
    writes there, and the same entry in another namespace keeps its rights."""
    admin = secure_broker.conn("admin")
    here, there = unique, unique + "x"
    await ensure_topics(admin, [bound_topic(f, entry, ns) for ns in (here, there)
                                for entry in REGISTRY.sources for f in entry.families])
    for ns in (here, there):
        await apply(admin, bindings(REGISTRY, ns), principals(REGISTRY), namespace=ns)
    removed, kept = secure_broker.conn(f"source-{REMOVED}"), secure_broker.conn(f"source-{KEPT}")
    mine, elsewhere = dossier_topic(REMOVED, here), dossier_topic(REMOVED, there)

    async def allowed() -> bool:  # the authorizer learns ACLs from the metadata log, a moment later
        return await writable(removed, [mine, elsewhere]) == {mine, elsewhere}

    await eventually_async(allowed, timeout=60, interval=0.5, what="the entry's rights in force in both namespaces")

    narrowed = SourceRegistry(sources=tuple(s for s in REGISTRY.sources if s.id != REMOVED))
    await apply(admin, bindings(narrowed, here), namespace=here)

    async def revoked() -> bool:
        return await writable(removed, [mine, elsewhere]) == {elsewhere}

    await eventually_async(revoked, timeout=60, interval=0.5, what="the removed entry refused in its namespace only")
    assert await writable(kept, [dossier_topic(KEPT, here)]) == {dossier_topic(KEPT, here)}


def test_a_deny_an_operator_added_survives_the_apply(secure_broker: SecureBroker, unique: str) -> None:
    """A DENY for a managed principal inside the applied scope (an incident's block) is never the table's to delete."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._acl import AclBinding, AclBindingFilter, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    from services.common.acls_apply import librdkafka_config

    admin = secure_broker.conn("admin")
    topic = dossier_topic(KEPT, unique)
    deny = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:source-{KEPT}", "*",
                      AclOperation.WRITE, AclPermissionType.DENY)
    client = AdminClient(librdkafka_config(admin))
    for future in client.create_acls([deny], request_timeout=30).values():
        future.result()
    asyncio.run(apply(admin, bindings(REGISTRY, unique), namespace=unique))
    found = client.describe_acls(AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                                  f"User:source-{KEPT}", None, AclOperation.ANY,  # type: ignore[arg-type]
                                                  AclPermissionType.DENY), request_timeout=30).result()
    assert [a.permission_type for a in found] == [AclPermissionType.DENY]
