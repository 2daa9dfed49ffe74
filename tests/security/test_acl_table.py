"""The ACL table derived from the registries: every topic has its readers and writers, raw topics are intake's to read,
the canonical topics intake's to write, and a source writes only its families' raw topics."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Family
from schemas.topics import (
    CANONICAL,
    DLQ_NOTIFY,
    DLQ_REPLAYED,
    METRICS_SNAPSHOTS,
    NOTIFY_LEDGER,
    NOTIFY_REPLAYS,
    NOTIFY_STATUS,
    PRIVACY_ERASURES,
    RAW,
    TOPICS,
    Group,
    TransactionalId,
    group_id,
)
from services.common.acls import (
    ADMIN,
    BROKER,
    SHARED_TRANSACTIONAL,
    SOURCES_FILE,
    Op,
    Pattern,
    Resource,
    bindings,
    main,
    principals,
    roles,
    service_roles,
    source_roles,
    table,
)
from services.privacy.erase import erasure_transactional_id
from services.privacy.store import key_topics
from services.sources.registry import Source, SourceRegistry, load_registry
from services.sources.topics import bound_topic, bound_topics

pytestmark = pytest.mark.unit

REGISTRY = load_registry(SOURCES_FILE)


def _who(op: Op, topic: str) -> set[str]:
    return {b.principal for b in bindings(REGISTRY) if b.resource is Resource.TOPIC and b.name == topic
            and b.pattern is Pattern.LITERAL and b.operation is op}


def test_every_registry_topic_has_a_writer_and_a_reader() -> None:
    """A topic added to schemas/topics.py without a role here would be usable by the super users only: refuse it."""
    orphans = [t.name for t in TOPICS if not _who(Op.WRITE, t.name) or not _who(Op.READ, t.name)]
    assert orphans == [], "give these topics to a role in services/common/acls.py"


def test_raw_topics_are_read_by_intake_only_and_canonical_written_by_intake_only() -> None:
    """Raw input (with personal data in clear) reaches intake only; only intake publishes canonical events."""
    for family in Family:
        assert _who(Op.READ, RAW[family].name) == {"intake"}
        assert _who(Op.WRITE, CANONICAL[family].name) == {"intake"}
    for topic in bound_topics(REGISTRY):
        assert _who(Op.READ, topic) == {"intake"}


def test_a_source_writes_only_its_bound_topics_and_no_source_the_shared_ones() -> None:
    """A bound raw topic has one source writing it, its own (ADR 0018), and intake, which moves a record off its
    commune's partition there; the shared raw topics no source."""
    for topic, (_, entry) in bound_topics(REGISTRY).items():
        assert _who(Op.WRITE, topic) == {f"source-{entry.id}", "intake"}
    for family in Family:
        assert _who(Op.WRITE, RAW[family].name) == {"gateway", "operator", "simulator", "intake"}


@pytest.mark.parametrize("principal", ["intake", "notify", "operator"])
def test_who_opens_sealed_records_with_the_key_store_reads_both_key_topics(principal: str) -> None:
    """intake, notify and the operator's `dlq list`/`replay` start a `KeyStore`, which reads the applicants' keys and
    the dead letters' day keys (`store.key_topics`): without either, the command fails with an authorisation error
    on the secure broker (the operator lacked the day keys')."""
    for topic in key_topics(""):
        assert principal in _who(Op.READ, topic), topic


def test_the_operator_rewraps_keys_on_both_key_topics_under_its_own_prefix() -> None:
    """`keys rewrap` runs as the operator: it writes each key topic again (the dead letters' keys too) in
    transactions under the re-wrap's prefix, which no other principal holds; intake and the gateway write keys too."""
    for topic in key_topics(""):
        assert "operator" in _who(Op.WRITE, topic), topic
    assert _who(Op.WRITE, key_topics("")[1]) == {"intake", "operator", "gateway"}  # the gateway: erasures
    prefix = f"{TransactionalId.KEYS_REWRAP.value}."
    assert {b.principal for b in bindings(REGISTRY) if b.resource is Resource.TRANSACTIONAL_ID
            and b.name == prefix} == {"operator"}


def test_the_operator_replays_notify_dead_letters_through_an_input_of_notifys() -> None:
    """`notify-dlq replay` runs as the operator: it reads commune.dlq.notify and writes each request to
    commune.notify.replays with its replay-log entry, in a transaction under the replay's prefix; notify alone reads
    that topic, and notify alone writes its ledger (ADR 0033)."""
    assert "operator" in _who(Op.READ, DLQ_NOTIFY.name)
    assert _who(Op.WRITE, NOTIFY_REPLAYS.name) == {"operator"}
    assert _who(Op.READ, NOTIFY_REPLAYS.name) == {"notify"}
    assert _who(Op.WRITE, NOTIFY_LEDGER.name) == {"notify"}
    assert "operator" in _who(Op.WRITE, DLQ_REPLAYED.name)


def test_only_the_deadline_tracker_creates_topics_and_only_under_its_own_prefix() -> None:
    """Topics are created by the admin at set-up; faust's internal topics are the one exception, under its app id."""
    creates = [b for b in bindings(REGISTRY) if b.operation is Op.CREATE]
    assert {(b.principal, b.name, b.pattern) for b in creates} == {
        ("notify", f"{group_id(Group.NOTIFY_DEADLINES, '')}-", Pattern.PREFIXED)}


def test_every_group_and_transactional_prefix_belongs_to_exactly_one_principal() -> None:
    """A consumer group or a transactional id shared by two principals would let one fence or disturb the other
    (erasures excepted: the CLI and the gateway's endpoint share the prefix, each erasure with an id of its own)."""
    exclusive = {f"{t.value}." for t in TransactionalId if t not in SHARED_TRANSACTIONAL}
    for resource, names in ((Resource.GROUP, {group_id(g, "") for g in Group}),
                            (Resource.TRANSACTIONAL_ID, exclusive)):
        owners = {n: {b.principal for b in bindings(REGISTRY) if b.resource is resource and b.name == n}
                  for n in names}
        assert {n: len(o) for n, o in owners.items()} == dict.fromkeys(names, 1)


@pytest.mark.parametrize(("via", "principal"), [("cli", "operator"), ("gateway", "gateway")])
def test_each_erasure_id_is_under_a_prefix_its_door_may_write(via: str, principal: str) -> None:
    """An erasure's own transactional id (one per run, so concurrent erasures never fence each other) is still
    granted by the prefixed ACL of the principal behind its door, in production and under a test namespace."""
    for namespace in ("", "t1"):
        tid = erasure_transactional_id(namespace, via, uuid.uuid4().hex)
        granted = {b.principal for b in bindings(REGISTRY, namespace) if b.resource is Resource.TRANSACTIONAL_ID
                   and b.operation is Op.WRITE and b.pattern is Pattern.PREFIXED and tid.startswith(b.name)}
        assert principal in granted


def test_super_users_have_no_role_and_every_principal_is_listed_once() -> None:
    """admin and broker are super users (server-secure.properties), never given to a service; names are unique."""
    names = principals(REGISTRY)
    assert names[:2] == [ADMIN, BROKER] and len(names) == len(set(names))
    assert {ADMIN, BROKER}.isdisjoint(r.principal for r in roles(REGISTRY))


def test_a_namespace_scopes_every_name() -> None:
    """Under a test namespace every topic, group and transactional-id ACL names the namespaced resource only."""
    assert all(b.name.startswith("t1.") for b in bindings(REGISTRY, "t1"))
    assert len(bindings(REGISTRY, "t1")) == len(bindings(REGISTRY))


_ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
_families = st.sets(st.sampled_from(list(Family)), min_size=1).map(lambda s: tuple(sorted(s)))


@given(st.lists(st.tuples(_ids, _families), max_size=6, unique_by=lambda e: e[0]))
def test_a_source_writes_exactly_the_raw_topics_of_its_families(entries: list[tuple[str, tuple[Family, ...]]]) -> None:
    """Whatever the registry says, a source principal gets WRITE on its own families' bound raw topics, nothing else."""
    registry = SourceRegistry(sources=tuple(Source(id=i, sources=("/x/*",), families=f, communes=("*",))
                                            for i, f in entries))
    for role, (source_id, families) in zip(source_roles(registry), entries, strict=True):
        rows = list(role.bindings(""))
        entry = registry.by_id[source_id]
        assert role.principal == f"source-{source_id}"
        assert {(b.resource, b.operation) for b in rows} == {(Resource.TOPIC, Op.WRITE)}
        assert {b.name for b in rows} == {bound_topic(f, entry).name for f in families}


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m services.common.acls` prints one line per ACL under a header; --principals the user names."""
    main([])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["PRINCIPAL", "OPERATION", "RESOURCE", "PATTERN", "NAME"]
    assert len(out) == 1 + len(bindings(REGISTRY))
    assert table(bindings(REGISTRY)).splitlines() == out
    main(["--principals"])
    assert capsys.readouterr().out.split() == principals(REGISTRY)
    assert {r.principal for r in service_roles(REGISTRY)} == {"intake", "notify", "metrics", "gateway", "operator",
                                                              "simulator"}


def test_each_service_describes_the_configs_of_exactly_the_topics_it_uses_and_no_source_any() -> None:
    """`ensure_topics` compares a service's topics' configs with the registry's at start: each service principal may
    describe the configs of the topics it reads or writes (and the tracker's own prefix), nothing else; a source
    principal, which never checks topics, none."""
    for role in service_roles(REGISTRY):
        described = {(b.name, b.pattern) for b in role.bindings("") if b.operation is Op.DESCRIBE_CONFIGS}
        used = {(t.name, Pattern.LITERAL) for t in (*role.reads, *role.writes)}
        prefixes = {(f"{group_id(g, '')}-", Pattern.PREFIXED) for g in role.own_prefixes}
        assert described == used | prefixes, role.principal
    assert not [b for role in source_roles(REGISTRY) for b in role.bindings("") if b.operation is Op.DESCRIBE_CONFIGS]


def test_a_subscriber_reads_the_published_topics_in_groups_of_its_own_and_writes_nothing() -> None:
    """`subscriber-<id>` reads the canonical events, the statuses, the snapshots and the erasures' notices (ADR 0035),
    joins groups under its prefix
    only, and writes, transacts and creates nothing (downstream audit: only the operator could read the canonical
    topics, could publish as any source and erase, and had no consumer group)."""
    mine = [b for b in bindings(REGISTRY) if b.principal == "subscriber-example-app"]
    assert {b.name for b in mine if b.resource is Resource.TOPIC and b.operation is Op.READ} == {
        t.name for t in (*CANONICAL.values(), NOTIFY_STATUS, METRICS_SNAPSHOTS, PRIVACY_ERASURES)}
    assert {(b.resource, b.operation) for b in mine} == {(Resource.TOPIC, Op.READ), (Resource.GROUP, Op.READ)}
    assert [(b.name, b.pattern) for b in mine if b.resource is Resource.GROUP] == [
        ("commune-bus.subscriber.example-app.", Pattern.PREFIXED)]
    without = REGISTRY.model_copy(update={"subscribers": ()})
    assert not [b for b in bindings(without) if b.principal.startswith("subscriber-")]
