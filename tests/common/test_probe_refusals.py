"""A worker whose run does not fail when the broker refuses it mid-run (notify: its consumers only wait on their
fetches) learns it from its broker probe: a probe failing while the brokers answer (`bootstrap_answers`: something
replies at the address, yet no request of this client's is answered) is a retrying loop that gets nowhere, and turns
`/healthz` 503 as the runtime's crash loop does; no broker answering at all stays an outage, `/readyz`'s alone.

Found on the secure broker (acl probe, 2026-12-06): notify's SCRAM password changed on the broker, then a broker
restart: every reconnection refused (SaslAuthenticationFailed), yet notify said `/readyz` 503 `broker unreachable`
and `/healthz` 200 for good, counted no restart, and logged no `service.crash_loop` (the runbook promises 503 after
~90 s)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest

from services.common import probe, streak
from services.common.health import Health
from services.common.settings import ServiceSettings
from tests.kafkatools import free_port

pytestmark = pytest.mark.unit
TRIES = 4


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streak, "UNHEALTHY_AFTER_RUNS", TRIES)
    monkeypatch.setattr(probe, "UNHEALTHY_AFTER_S", 0.0)


@pytest.fixture
async def refusing() -> AsyncIterator[str]:
    """Accepts connections and hangs up at once: a broker that is there but refuses this client."""

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def probed(bootstrap: str, answers: list[bool]) -> tuple[Health, list[bool]]:
    """`probe_loop` with `health` over probes answering `answers` in turn (then the last one), the brokers asked at
    `bootstrap` whenever a probe fails; the health once every answer was reported, and the reports."""
    health, reports, done = Health("probe-test"), [], asyncio.Event()
    health.broker_answers = partial(probe.bootstrap_answers, ServiceSettings(bootstrap=bootstrap), "probe-test", 1.0)
    queue = list(answers)

    async def answer() -> bool:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def report(ok: bool) -> None:
        reports.append(ok)
        if len(reports) >= len(answers):
            done.set()

    task = asyncio.ensure_future(probe.probe_loop(answer, report, every_s=0.0, health=health))
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return health, reports


async def test_probes_failing_while_the_broker_refuses_turn_healthz_503(quick: None, refusing: str) -> None:
    health, _ = await probed(refusing, [False] * (TRIES + 1))
    assert not health.alive
    assert health.alive_detail == f"broker probe: {TRIES} tries in a row failed without progress, the last with " \
                                  f"{probe.REFUSED}"


async def test_an_answer_makes_healthz_200_again(quick: None, refusing: str) -> None:
    health, _ = await probed(refusing, [False] * (TRIES + 1) + [True])
    assert health.alive, health.alive_detail


async def test_probes_failing_while_no_broker_answers_are_an_outage(quick: None) -> None:
    health, reports = await probed(f"127.0.0.1:{free_port()}", [False] * (TRIES + 2))
    assert health.alive, health.alive_detail
    assert not any(reports)
