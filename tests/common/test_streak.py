"""The one rule of `/healthz` for every retrying loop (`services.common.streak`), and its loops kept apart."""

from __future__ import annotations

import asyncio

import pytest

from services.common import runtime, streak
from services.common.health import Health
from services.common.streak import Streak

pytestmark = pytest.mark.unit


@pytest.fixture
def health() -> Health:
    return Health("test-streak")


async def test_a_loop_failing_without_progress_turns_healthz_503_and_its_progress_200(health: Health) -> None:
    """UNHEALTHY_AFTER_RUNS failed tries in a row: unhealthy, with the loop, the count and the last error's type;
    the loop's progress makes it healthy again and starts the count afresh."""
    claims = Streak(health, "claims reader")
    for _ in range(streak.UNHEALTHY_AFTER_RUNS - 1):
        claims.failed("KafkaConnectionError")
    assert health.alive
    claims.failed("TopicAuthorizationFailedError")
    assert not health.alive
    assert health.liveness()["detail"] == ("claims reader: 10 tries in a row failed without progress, the last with "
                                           "TopicAuthorizationFailedError")
    claims.progressed()
    assert health.alive and health.alive_detail == "running"
    claims.failed("KafkaConnectionError")
    assert health.alive


async def test_one_loops_progress_does_not_hide_anothers_failure_but_a_commit_is_everyones(health: Health) -> None:
    """The runtime's run staying up says nothing of the claims reader failing inside it; a commit (the gateway
    publishes only with its claims working) does, and the next failure counts from zero."""
    runs, claims = Streak(health), Streak(health, "claims reader")
    for _ in range(streak.UNHEALTHY_AFTER_RUNS):
        claims.failed("KafkaConnectionError")
        runs.failed("KafkaConnectionError")
    assert health.liveness()["detail"] == (
        "claims reader: 10 tries in a row failed without progress, the last with KafkaConnectionError; "
        "10 runs in a row failed without progress, the last with KafkaConnectionError")
    runs.progressed()
    assert not health.alive
    health.committed()
    assert health.alive
    claims.failed("KafkaConnectionError")
    assert health.alive and claims.fruitless == 0


async def test_a_run_that_stays_up_is_progress(health: Health, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run up PROGRESS_RUN_S (an idle service commits nothing) makes the loop healthy, and its failure then counts
    no further than zero."""
    monkeypatch.setattr(streak, "PROGRESS_RUN_S", 0.05)
    claims = Streak(health, "claims reader")
    for _ in range(streak.UNHEALTHY_AFTER_RUNS):
        claims.started()
        claims.failed("KafkaConnectionError")
    assert not health.alive
    claims.started()
    await asyncio.sleep(0.1)
    assert health.alive
    claims.failed("KafkaConnectionError")
    assert claims.fruitless == 0


async def test_a_loop_without_back_off_is_unhealthy_only_after_as_long_as_the_runs_back_off(
        health: Health, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker watch tries every second: ten refusals in ten seconds are a broker restart, not a crash loop."""
    monkeypatch.setattr(streak, "UNHEALTHY_AFTER_RUNS", 3)
    watch = Streak(health, "broker watch", at_least_s=0.2)
    for _ in range(5):
        watch.failed("KafkaConnectionError")
    assert health.alive
    await asyncio.sleep(0.25)
    watch.failed("KafkaConnectionError")
    assert not health.alive


def test_the_floor_is_what_the_runs_back_off_takes() -> None:
    """UNHEALTHY_AFTER_S is no longer than the runtime's back-off before its UNHEALTHY_AFTER_RUNS-th failed run."""
    delays = [min(runtime.FIRST_BACKOFF_S * 2 ** n, runtime.MAX_BACKOFF_S)
              for n in range(streak.UNHEALTHY_AFTER_RUNS - 1)]
    assert sum(delays) - 1 <= streak.UNHEALTHY_AFTER_S <= sum(delays)
