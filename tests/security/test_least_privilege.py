"""Each principal on the secure broker can do exactly its own work: produce, consume, join, transact where its role
says, and is refused (TopicAuthorization, GroupAuthorization, TransactionalIdAuthorization) everywhere else."""

from __future__ import annotations

import asyncio

import pytest

from schemas.topics import TOPICS, Group, TransactionalId, group_id, transactional_id
from services.common.acls import SOURCES_FILE, Role, roles, subscriber_groups
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.security.conftest import SecureBroker
from tests.security.probes import joins, readable, transacts, writable

pytestmark = pytest.mark.kafka

REGISTRY = load_registry(SOURCES_FILE)
ROLES = roles(REGISTRY)
SPECS = [*TOPICS, *(bound_topic(f, entry) for entry in REGISTRY.sources for f in entry.families)]
ALL = [t.name for t in SPECS]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.principal)
async def test_writes_exactly_its_topics(secure_broker: SecureBroker, role: Role) -> None:
    """A principal's producer is acknowledged on the topics its role writes and refused on every other topic."""
    assert await writable(secure_broker.conn(role.principal), ALL) == {t.name for t in role.writes}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.principal)
async def test_reads_exactly_its_topics(secure_broker: SecureBroker, role: Role) -> None:
    """A principal fetches from the topics its role reads and is refused on every other topic (raw: intake only)."""
    conn = secure_broker.conn(role.principal)
    answers = await asyncio.gather(*(readable(conn, t.name, t.partitions) for t in SPECS))
    assert {name for name, ok in zip(ALL, answers, strict=True) if ok} == {t.name for t in role.reads}


@pytest.mark.parametrize("role", [r for r in ROLES if r.reads], ids=lambda r: r.principal)
async def test_joins_only_its_groups(secure_broker: SecureBroker, role: Role) -> None:
    """A consumer joins its service's groups, or a subscriber a group under its own prefix; any other group (another
    service's, another subscriber's, a made-up one) is refused."""
    conn = secure_broker.conn(role.principal)
    topic = role.reads[0].name
    own = [f"{prefix}probe" for prefix in role.group_prefixes]
    groups = [group_id(g, "") for g in Group] + ["commune-bus.intruder", f"{subscriber_groups('other-app')}probe", *own]
    answers = await asyncio.gather(*(joins(conn, g, topic) for g in groups))
    assert {g for g, ok in zip(groups, answers, strict=True) if ok} == {group_id(g, "") for g in role.groups} | {*own}


@pytest.mark.parametrize("role", [r for r in ROLES if r.transactional], ids=lambda r: r.principal)
async def test_transacts_only_under_its_prefixes(secure_broker: SecureBroker, role: Role) -> None:
    """A transactional producer commits under its own transactional-id prefix; another service's prefix is refused."""
    conn = secure_broker.conn(role.principal)
    topic = role.writes[0].name
    ids = {prefix: transactional_id(prefix, "", "probe") for prefix in TransactionalId}
    answers = {prefix: await transacts(conn, tid, topic) for prefix, tid in ids.items()}
    assert {p for p, ok in answers.items() if ok} == set(role.transactional)


async def test_a_source_writes_its_own_bound_topic_only(secure_broker: SecureBroker) -> None:
    """The one-stop system of commune 02269 (dossier only) writes its bound dossier topic: not Lạng Sơn's, not the
    shared raw topics (where a claimed source is not bound to the writer), no other family."""
    allowed = await writable(secure_broker.conn("source-thuong-lam-one-stop"), ALL)
    assert allowed == {"commune.raw.dossier.src.thuong-lam-one-stop"}
