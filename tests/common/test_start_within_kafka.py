"""A writer whose broker gives it no producer id ends within its bound, saying so, instead of waiting for ever.

A transactional producer's start asks the broker's transaction coordinator for a producer id, and aiokafka asks again,
without a word, for as long as the answer is an error it deems retriable. The broker here cannot make its
`__transaction_state` topic (replication factor 2, one broker), so it answers COORDINATOR_NOT_AVAILABLE for ever, as
a cluster short of brokers does: `dlq replay` and an erasure were silent until killed (a probe: still starting after
20 s, and after 300 s in a CI run of the replay outage test)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.events import Family
from schemas.replay import DLQ_REPLAYED
from schemas.topics import DLQ_INTAKE, PRIVACY_AUDIT, RAW, scoped
from services.cli import kafka_io, replaying
from services.cli.said import NO_PRODUCER_ID_HINT
from services.common import clients, closing
from services.common.admin import ensure_topics
from services.common.health import Health
from services.common.runtime import run_once
from services.common.settings import KafkaConnection
from services.privacy.erase import erase_cccd, erasure_topics
from tests import naming
from tests.brokers import OwnBroker
from tests.cli.test_replay_outage import letters
from tests.common.test_join_stop_kafka import Started, deadlines, intake, metrics
from tests.kafkatools import ROOT, read_all
from tests.keys_env import PRIVACY_ENV
from tests.privacy.keys import PEPPER

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]
BOUND_S = 3.0
GUARD_S = 60.0
"""How long a test waits for a writer bounded at `BOUND_S` before it calls the writer unbounded."""


@pytest.fixture(scope="module")
def coordinatorless(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[OwnBroker]:
    """A broker whose transaction coordinator is never available (its `__transaction_state` wants two replicas)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("an external broker was given; this test starts a misconfigured one of its own")
    broker = OwnBroker(Path(tmp_path_factory.mktemp("coordinatorless")) / "kafka",
                       properties={"transaction.state.log.replication.factor": "2"})
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()


async def test_the_helper_stops_a_producer_the_broker_gives_no_id(coordinatorless: OwnBroker) -> None:
    conn = KafkaConnection(bootstrap=coordinatorless.bootstrap)
    producer = clients.transactional_producer(conn, transactional_id="tests-" + naming.unique(), client_id="tests")
    with pytest.raises(closing.StartUnanswered, match=f"gave the probe no producer id within {BOUND_S:g} s"):
        await asyncio.wait_for(closing.start_within("tests", "probe", producer, BOUND_S), GUARD_S)
    assert vars(producer)["_closed"] is True, "the producer given up is stopped (aiokafka's flag, as its __del__'s)"


async def test_a_replay_ends_with_nothing_replayed(coordinatorless: OwnBroker,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq replay` (and `notify-dlq replay`, the same writer) ends with `Unacknowledged`: nothing replayed."""
    monkeypatch.setattr(kafka_io, "ACK_STALL_S", BOUND_S)
    conn = KafkaConnection(bootstrap=coordinatorless.bootstrap)
    namespace = "nc" + naming.unique()
    raw = scoped(RAW[Family.DOSSIER], namespace)
    await ensure_topics(conn, [raw, scoped(DLQ_REPLAYED, namespace)])
    todo = letters(raw.name, 3)
    replay = replaying.replay(conn, namespace, todo, scoped(DLQ_INTAKE, namespace).name, set(), {})
    with pytest.raises(kafka_io.Unacknowledged, match=r"no producer id within 3 s: .*: nothing replayed"):
        await asyncio.wait_for(replay, GUARD_S)
    assert await read_all(coordinatorless.bootstrap, raw.name, idle=0.5) == []


async def test_an_erasure_ends_unanswered_and_writes_nothing(coordinatorless: OwnBroker,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's `erase` and the gateway's `/v1/erasures` (a 503, retry) get `StartUnanswered`, a Kafka error."""
    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    conn = KafkaConnection(bootstrap=coordinatorless.bootstrap)
    namespace = "nc" + naming.unique()
    await ensure_topics(conn, erasure_topics(namespace))
    erasure = erase_cccd(conn, namespace, PEPPER, "008123456789", requested_by="operator:tester")
    with pytest.raises(closing.StartUnanswered, match="gave the erasure writer no producer id"):
        await asyncio.wait_for(erasure, GUARD_S)
    assert await read_all(coordinatorless.bootstrap, scoped(PRIVACY_AUDIT, namespace).name, idle=0.5) == []


def test_the_erase_command_says_so_in_one_line(coordinatorless: OwnBroker) -> None:
    """`commune-bus erase` ends with exit 1 and one line: the producer id not given, and what to check (it said to
    check the bootstrap and the credentials, which had worked); the CCCD is not printed."""
    namespace = "nc" + naming.unique()
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=coordinatorless.bootstrap), erasure_topics(namespace)))
    code = f"from services.common import closing; closing.UNANSWERED_S = {BOUND_S}; " \
           "from services.cli.main import main; main()"
    env = {**os.environ, **PRIVACY_ENV, "KAFKA_BOOTSTRAP": coordinatorless.bootstrap, "COLUMNS": "400"}
    done = subprocess.run([sys.executable, "-c", code, "erase", "--cccd", "008123456789", "--namespace", namespace,
                           "--requested-by", "tester"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=GUARD_S)
    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("commune-bus: Kafka:")]
    assert len(said) == 1 and "gave the erasure writer no producer id within 3 s" in said[0], done.stderr
    assert NO_PRODUCER_ID_HINT in said[0] and "--bootstrap" not in said[0], said
    assert "Traceback" not in done.stderr and "008123456789" not in done.stdout + done.stderr


@pytest.mark.parametrize("service", [intake, metrics], ids=["intake", "metrics"])
async def test_a_services_run_ends_with_a_kafka_error_the_runtime_restarts(
        coordinatorless: OwnBroker, service: Callable[[str, str, Path], Started], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake's producer (before its group join) and metrics' partition writers (in the restore, after it) start
    within their bound: the run ends with `StartUnanswered`, a Kafka error, so the runtime logs and counts its
    restarts and `/healthz` turns 503 once they get nowhere. Before, each run waited for ever, `/healthz` 200."""
    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    bootstrap, namespace = coordinatorless.bootstrap, "nc" + naming.unique()
    name, _, _, run = service(bootstrap, namespace, tmp_path)
    with pytest.raises(ExceptionGroup) as failed:
        await asyncio.wait_for(run_once(name, run, asyncio.Event(), Health(name)), GUARD_S)
    unanswered = failed.value.subgroup(closing.StartUnanswered)
    assert unanswered is not None and isinstance(unanswered.exceptions[0], KafkaError), failed.value
    client = {"intake": "transactional producer", "metrics": r"writer p\d"}[name]  # (whichever writer's came first)
    assert re.search(f"gave the {client} no producer id within {BOUND_S:g} s", str(unanswered.exceptions[0]))


@pytest.fixture
def starts_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every producer's start waits for ever, as aiokafka's does while its producer id is refused with a retriable
    error or not answered (the coordinatorless broker gives an idempotent producer its id: any broker does)."""

    async def never_answered(self: AIOKafkaProducer) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(AIOKafkaProducer, "start", never_answered)


def notify(bootstrap: str, namespace: str, _: Path) -> Started:
    from services.notify.app import run
    from services.notify.settings import NotifySettings

    settings = NotifySettings(bootstrap=bootstrap, namespace=namespace, deadlines=False)
    return "notify", "", [], lambda supervisor: run(supervisor, settings)


@pytest.mark.parametrize("service", [notify, deadlines], ids=["notify", "notify-deadlines"])
async def test_notifys_idempotent_writers_start_within_their_bound(
        kafka_bootstrap: str, service: Callable[[str, str, Path], Started], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, starts_unanswered: None) -> None:
    """notify's producer and its deadline tracker's are idempotent: their start asks for a producer id as a
    transactional one's does (any broker answers that one; the coordinatorless broker too, so the start is made to
    wait here, as aiokafka's does while the answer is a retriable error). The run ends with `StartUnanswered` within
    the bound, which the runtime counts and restarts; before, it waited for ever, not ready, with nothing said."""
    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    name, _, _, run = service(kafka_bootstrap, "nc" + naming.unique(), tmp_path)
    with pytest.raises(ExceptionGroup) as failed:
        await asyncio.wait_for(run_once(name, run, asyncio.Event(), Health(name)), GUARD_S)
    unanswered = failed.value.subgroup(closing.StartUnanswered)
    assert unanswered is not None and "gave the producer no producer id within 3 s" in str(unanswered.exceptions[0])


@pytest.mark.parametrize("service", [notify, deadlines], ids=["notify", "notify-deadlines"])
async def test_a_stop_ends_notifys_wait_for_a_producer_id_at_once(
        kafka_bootstrap: str, service: Callable[[str, str, Path], Started], tmp_path: Path,
        starts_unanswered: None) -> None:
    """As intake's (below): a stop while the producer waits for its id ends the run at once, cleanly; it waited out
    the bound (60 s), past the stop's deadline (25 s: `service.stop_forced`; audit)."""
    await stopped_while_starting(service(kafka_bootstrap, "nc" + naming.unique(), tmp_path), asking_s=2)


async def test_the_gateways_claims_producer_starts_within_its_bound(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, starts_unanswered: None) -> None:
    """The gateway's claims log (idempotent) alike: its run ends with `StartUnanswered`, which its reader logs and
    runs again after a back-off (`gateway.claims_unavailable`); before, the reader waited for ever, not ready."""
    from schemas.topics import GATEWAY_CLAIMS
    from services.gateway.claimlog import KafkaClaims

    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    claims = KafkaClaims(KafkaConnection(bootstrap=kafka_bootstrap), scoped(GATEWAY_CLAIMS, "nc" + naming.unique()),
                         client_id="tests-gateway", timeout_s=10.0)
    with pytest.raises(closing.StartUnanswered, match="gave the claims-producer no producer id within 3 s"):
        await asyncio.wait_for(claims._run_once(), GUARD_S)


async def test_the_simulators_producer_starts_within_its_bound(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, starts_unanswered: None) -> None:
    """The simulator (`make demo`'s traffic) alike: it ends with `StartUnanswered` instead of sending nothing, for
    ever, with nothing said (audit)."""
    from services.simulator import producer
    from services.simulator.settings import SimulatorSettings

    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    settings = SimulatorSettings(bootstrap=kafka_bootstrap, namespace="nc" + naming.unique())
    with pytest.raises(closing.StartUnanswered, match="gave the producer no producer id within 3 s"):
        await asyncio.wait_for(producer.run(settings, asyncio.Event()), GUARD_S)


async def test_publish_starts_within_its_bound(monkeypatch: pytest.MonkeyPatch, starts_unanswered: None) -> None:
    """`commune-bus publish`'s producer (idempotent) alike: `StartUnanswered` within `ACK_STALL_S`, nothing sent."""
    monkeypatch.setattr(kafka_io, "ACK_STALL_S", BOUND_S)
    publish = kafka_io.publish(KafkaConnection(bootstrap="127.0.0.1:9"), "any", [(None, b"{}", [])], print)
    with pytest.raises(closing.StartUnanswered, match="gave the producer no producer id within 3 s"):
        await asyncio.wait_for(publish, GUARD_S)


async def test_a_stop_ends_intakes_wait_for_its_producer_id_at_once(coordinatorless: OwnBroker, tmp_path: Path) -> None:
    """SIGTERM while intake's producer waits for a producer id: the run ends at once, cleanly, its producer closed;
    it waited out the whole bound (60 s here), then the client stops, past the stop's budget (review)."""
    await stopped_while_starting(intake(coordinatorless.bootstrap, "nc" + naming.unique(), tmp_path), asking_s=3)


async def stopped_while_starting(started: Started, asking_s: float) -> None:
    """Start the run, stop it `asking_s` later (its topics made, its producer asking for an id): it ends without an
    error well within the clients' close bound."""
    import time

    stop = asyncio.Event()
    name, _, _, run = started
    running = asyncio.create_task(run_once(name, run, stop, Health(name)))
    await asyncio.sleep(asking_s)
    assert not running.done(), running
    stopped_at = time.monotonic()
    stop.set()
    await asyncio.wait_for(running, GUARD_S)  # returns: no error
    assert time.monotonic() - stopped_at < closing.CLOSE_TIMEOUT_S, "the stop waited for the producer's start"
