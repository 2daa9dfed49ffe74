"""A broker outage is `/readyz`'s business, not `/healthz`'s: runs failing while no broker answers are not a crash
loop (a liveness restart of every worker would mend nothing and delay the recovery); runs failing while a broker
answers but refuses this client are (`services.common.streak`, `probe.bootstrap_answers`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from services.common import probe, runtime, streak
from services.common.clients import consumer
from services.common.health import Health
from services.common.runtime import Supervisor, serve
from services.common.settings import ServiceSettings
from tests.kafkatools import free_port
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
RUNS = 4
"""`UNHEALTHY_AFTER_RUNS` in these tests."""


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "FIRST_BACKOFF_S", 0.02)
    monkeypatch.setattr(runtime, "MAX_BACKOFF_S", 0.05)
    monkeypatch.setattr(streak, "UNHEALTHY_AFTER_RUNS", RUNS)


@pytest.fixture
async def not_kafka() -> AsyncIterator[str]:
    """A TCP server that accepts and hangs up at once: something answers at the address, but no Kafka for us
    (as a broker refusing this client's credentials or TLS looks from the client)."""

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}"


async def run_service(bootstrap: str, runs_wanted: int) -> tuple[Health, int]:
    """`serve` a worker whose every run starts a consumer on `bootstrap` (failing: nothing Kafka there) until it
    has run `runs_wanted` times; the service's health then, and its runs."""
    service, stop, runs = f"test-{uuid.uuid4().hex[:8]}", asyncio.Event(), 0
    health = Health(service)

    async def worker(supervisor: Supervisor) -> None:
        nonlocal runs
        runs += 1
        if runs > runs_wanted:
            stop.set()
            return
        client = consumer(ServiceSettings(bootstrap=bootstrap), "t", client_id=service, request_timeout_ms=1000)
        try:
            await client.start()
        finally:
            await client.stop()

    await asyncio.wait_for(serve(service, ServiceSettings(bootstrap=bootstrap, http_port=0), worker, health=health,
                                 stop=stop), timeout=60)
    return health, runs


async def test_runs_failing_while_no_broker_answers_leave_healthz_alive(quick: None) -> None:
    """Three times UNHEALTHY_AFTER_RUNS runs fail with the bootstrap address refusing connections: still alive
    (before: unhealthy after UNHEALTHY_AFTER_RUNS), not ready."""
    health, runs = await run_service(f"127.0.0.1:{free_port()}", 3 * RUNS)
    assert runs == 3 * RUNS + 1
    assert health.alive, health.alive_detail
    assert not health.ready


async def test_runs_failing_while_something_answers_but_refuses_turn_healthz_503(quick: None, not_kafka: str) -> None:
    """The same runs against an address that accepts connections but is no broker for this client: a crash loop,
    `/healthz` 503 with the count and the error's type."""
    health, _ = await run_service(not_kafka, 2 * RUNS)
    assert not health.alive
    assert health.alive_detail.endswith("runs in a row failed without progress, the last with KafkaConnectionError")


def restarts(service: str, counter: str) -> float:
    return REGISTRY.get_sample_value(counter, {"service": service, "error": "KafkaConnectionError"}) or 0.0


@pytest.mark.parametrize("outage", [True, False])
async def test_runs_ended_by_an_outage_are_no_restarts_of_a_crash_loop(quick: None, not_kafka: str,
                                                                       outage: bool) -> None:
    """Runs failing while no broker answers count in `commune_service_outage_restarts_total`, not in
    `commune_service_restarts_total`, whose alert (ServiceRestarting: 3 in 15 minutes, for 5 minutes) is for crash
    loops: a broker restart of seconds ends ~5 runs of intake, and the alert fired 5 minutes after the broker was back
    and stayed 10 more (runbooks audit). Runs failing while something answers (a refusal) count as restarts."""
    bootstrap = f"127.0.0.1:{free_port()}" if outage else not_kafka
    health, _ = await run_service(bootstrap, RUNS)
    service = health.service
    counted, apart = ("commune_service_outage_restarts_total", "commune_service_restarts_total")[::1 if outage else -1]
    assert (restarts(service, counted), restarts(service, apart)) == (RUNS, 0)


@pytest.fixture
async def frozen() -> AsyncIterator[str]:
    """A TCP server that accepts and then says nothing, ever (what a broker's frozen JVM looks like from the client:
    the kernel still accepts connections)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}"
    for writer in held:
        writer.close()


async def test_bootstrap_answers_tells_nothing_there_from_something_there(not_kafka: str, frozen: str) -> None:
    """False when no bootstrap address accepts a connection, or the one that does never replies (before: a frozen
    broker counted as answering, and runs failing against it as a crash loop); True when one replies, even by
    hanging up (one good address is enough)."""
    dead = f"127.0.0.1:{free_port()}"
    assert not await probe.bootstrap_answers(ServiceSettings(bootstrap=dead), timeout_s=1)
    assert not await probe.bootstrap_answers(ServiceSettings(bootstrap=f"{dead},{frozen}"), timeout_s=1)
    assert await probe.bootstrap_answers(ServiceSettings(bootstrap=f"{dead},{frozen},{not_kafka}"), timeout_s=1)


async def test_a_gateway_loop_counts_only_failures_while_the_broker_answers() -> None:
    """`failed_unless_outage` asks `Health.broker_answers`: no answer, not counted; an answer, counted; a commit in
    between still ends the streak."""
    health, answers = Health("test-outage"), [False]

    async def broker_answers() -> bool:
        return answers[0]

    health.broker_answers = broker_answers
    watch = streak.Streak(health, "broker watch")
    for _ in range(3 * streak.UNHEALTHY_AFTER_RUNS):
        await watch.failed_unless_outage("KafkaConnectionError")
    assert health.alive and watch.fruitless == 0
    answers[0] = True
    for _ in range(streak.UNHEALTHY_AFTER_RUNS):
        await watch.failed_unless_outage("KafkaConnectionError")
    assert not health.alive
    health.committed()
    answers[0] = False
    await watch.failed_unless_outage("KafkaConnectionError")
    assert health.alive and watch.fruitless == 0


async def test_asking_the_broker_gives_way_to_stop() -> None:
    """A probe that hangs does not hold up a stopping loop: the failure counts, and it returns at once."""
    health, stop = Health("test-outage-stop"), asyncio.Event()

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return False

    health.broker_answers = hangs
    stop.set()
    watch = streak.Streak(health, "runs")
    await asyncio.wait_for(watch.failed_unless_outage("KafkaConnectionError", stop), timeout=1)
    assert watch.fruitless == 1
    await eventually_async(lambda: not [t for t in asyncio.all_tasks() if "hangs" in repr(t.get_coro())],
                           timeout=2, interval=0.01, what="the probe cancelled")


async def test_a_run_that_lasted_before_the_outage_ends_the_streak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed runs counted while the broker answered, then a run that stayed up PROGRESS_RUN_S and failed in an
    outage: that run got somewhere (its timer, `Streak.started`), the count starts afresh."""
    monkeypatch.setattr(streak, "PROGRESS_RUN_S", 0.05)
    health, answers = Health("test-outage-lasted"), [True]

    async def broker_answers() -> bool:
        return answers[0]

    health.broker_answers = broker_answers
    runs = streak.Streak(health)
    for _ in range(3):
        runs.started()
        await runs.failed_unless_outage("KafkaConnectionError")
    assert runs.fruitless == 3
    answers[0] = False
    runs.started()
    await asyncio.sleep(0.1)
    await runs.failed_unless_outage("KafkaConnectionError")
    assert runs.fruitless == 0 and health.alive
