"""`commune-bus dlq replay` by the operator on dead letters from raw topics it may write and from a source's own raw
topic, which only that source and the admin may write (ADR 0018): the writable ones are replayed once, the others left
as they are and reported with the admin command that replays them, exit 1; the admin's run of it replays the rest
(user walkthrough: one such letter stopped the whole replay, `not_json` 0 of 291, and `--dry-run` promised them all)."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess

import pytest

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.replay import DLQ_REPLAYED
from schemas.topics import DLQ_INTAKE, RAW, TOPICS, scoped
from services.common import clients
from services.common.acls import SOURCES_FILE, bindings, principals
from services.common.acls_apply import apply
from services.common.admin import ensure_topics
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.integrator.conftest import CLI
from tests.keys_env import PRIVACY_ENV
from tests.security.conftest import SecureBroker
from tests.security.probes import writable
from tests.security.test_services_secure import _read
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
REGISTRY = load_registry(SOURCES_FILE)
ENTRY = REGISTRY.by_id["thuong-lam-one-stop"]
SHARED, BOUND = 3, 2


def cli(broker: SecureBroker, user: str, *args: str) -> tuple[int, str]:
    """`commune-bus *args` as `user`: its exit status and what it wrote to stderr, on one line."""
    env = {**os.environ, **PRIVACY_ENV, **broker.conn(user).environment(), "COLUMNS": "200"}
    env.pop("COMMUNE_BUS_NAMESPACE", None)
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=180)
    return done.returncode, " ".join(done.stderr.split())


async def values(broker: SecureBroker, topic: str) -> list[bytes]:
    """The dead letters' values re-driven to `topic` (not the rights probe's record)."""
    return sorted(v for r in await _read(broker.conn("admin"), topic) if (v := r.value or b"").startswith(b"not json"))


@pytest.fixture
def namespace(secure_broker: SecureBroker, unique: str) -> str:
    """The registry's topics, every source's bound ones and every ACL under a namespace of this test's own, and the
    DLQ holding `not_json` dead letters of the shared raw dossier topic (the operator may write it) and of
    thuong-lam-one-stop's own (it may not), interleaved."""
    ns = "rr" + unique
    admin = secure_broker.conn("admin")
    shared, bound = scoped(RAW[Family.DOSSIER], ns).name, bound_topic(Family.DOSSIER, ENTRY, ns).name
    asyncio.run(ensure_topics(admin, [*(scoped(t, ns) for t in TOPICS),
                                      *(bound_topic(f, e, ns) for e in REGISTRY.sources for f in e.families)]))
    asyncio.run(apply(admin, bindings(REGISTRY, ns), principals(REGISTRY), namespace=ns))

    async def in_force() -> bool:  # the authorizer learns new ACLs from the metadata log, a moment later
        return await writable(secure_broker.conn("operator"), [shared]) == {shared}

    asyncio.run(eventually_async(in_force, timeout=60, interval=0.5, what="the operator's ACLs in force"))
    sources = [shared, bound, shared, bound, shared]

    async def dead_letter() -> None:
        producer = clients.producer(admin, client_id="test-dlq")
        await producer.start()
        try:
            for n, topic in enumerate(sources):
                context = DeadLetterContext(reason=Reason.NOT_JSON, field="", message="not JSON", source_topic=topic,
                                            source_partition=0, source_offset=n, rejected_at="2026-12-01T00:00:00Z")
                await producer.send_and_wait(scoped(DLQ_INTAKE, ns).name, b"not json %d" % n, key=b"02269",
                                             headers=context.headers(), partition=0)
        finally:
            await producer.stop()

    asyncio.run(dead_letter())
    return ns


def test_the_operator_replays_what_it_may_write_and_leaves_the_rest_for_the_admin(secure_broker: SecureBroker,
                                                                                namespace: str) -> None:
    """The dry run and the real run split alike: the letters of the shared raw topic replayed once, those of the
    source's own topic left and reported with the admin command, exit 1; run again nothing twice; the admin's run of
    the command printed replays the rest, once."""
    ns = namespace
    shared, bound = scoped(RAW[Family.DOSSIER], ns).name, bound_topic(Family.DOSSIER, ENTRY, ns).name
    mine = [b"not json 0", b"not json 2", b"not json 4"]
    theirs = [b"not json 1", b"not json 3"]
    args = ("dlq", "replay", "--reason", "not_json", "--namespace", ns)

    status, err = cli(secure_broker, "operator", *args, "--dry-run")
    assert status == 0, err
    assert f"would replay {SHARED} of {SHARED + BOUND} matching dead letters" in err, err
    assert f"{BOUND} left to the admin" in err and bound in err, err

    status, err = cli(secure_broker, "operator", *args)
    assert status == 1, err
    assert f"replayed {SHARED} dead letters" in err, err
    assert f"{BOUND} not replayed, left as they are" in err and f"{bound} ({BOUND})" in err, err
    assert "Traceback" not in err
    assert asyncio.run(values(secure_broker, shared)) == mine, "each writable letter re-driven once"
    assert asyncio.run(values(secure_broker, bound)) == []

    status, again = cli(secure_broker, "operator", *args)
    assert status == 1 and "replayed 0 dead letters" in again and f"{BOUND} not replayed" in again, again
    assert asyncio.run(values(secure_broker, shared)) == mine, "nothing replayed twice"

    command = err.split("replay them as admin")[1].split(": ", 1)[1]
    command = command[command.index("commune-bus dlq replay"):]
    assert f"--topic {bound}" in command and f"--namespace {ns}" in command, command
    status, done = cli(secure_broker, "admin", *shlex.split(command)[1:])
    assert status == 0 and f"replayed {BOUND} dead letters" in done, done
    assert asyncio.run(values(secure_broker, bound)) == theirs, "the rest re-driven once, by the admin"
    assert asyncio.run(values(secure_broker, shared)) == mine
    logged = [r.key for r in asyncio.run(_read(secure_broker.conn("admin"), scoped(DLQ_REPLAYED, ns).name))]
    assert len(logged) == len(set(logged)) == SHARED + BOUND, "each dead letter logged once in all"

    status, last = cli(secure_broker, "operator", *args)
    assert status == 0 and "replayed 0 dead letters" in last and "not replayed" not in last, last


async def test_a_topic_refused_mid_replay_aborts_its_transaction_and_the_others_go_on(secure_broker: SecureBroker,
                                                                                   namespace: str) -> None:
    """Rights the broker could not tell beforehand: the first write to the source's own topic is refused inside a
    transaction that already holds a writable letter and its log entry; that transaction is aborted, the refused
    topic's letters handed back unreplayed, and the others written in a new one: each once, none of theirs logged."""
    from services.cli import dlq, replaying

    ns = namespace
    shared, bound = scoped(RAW[Family.DOSSIER], ns).name, bound_topic(Family.DOSSIER, ENTRY, ns).name
    operator = secure_broker.conn("operator")
    listing = await dlq.dead_letters(operator, ns, dlq.Filters())
    left: dict[str, list[int]] = {}
    sent = await replaying.replay(operator, ns, listing.letters, listing.topic, listing.done, {},
                                  refused=lambda topic, theirs: left.setdefault(topic, []).extend(
                                      d.offset for d in theirs))
    assert sorted(d.offset for d in sent) == [0, 2, 4] and left == {bound: [1, 3]}
    assert await values(secure_broker, shared) == [b"not json 0", b"not json 2", b"not json 4"], "once each"
    assert await values(secure_broker, bound) == []
    logged = [r.key for r in await _read(secure_broker.conn("admin"), scoped(DLQ_REPLAYED, ns).name)]
    assert len(logged) == len(set(logged)) == SHARED, "only the replayed ones logged, once each"
