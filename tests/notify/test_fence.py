"""The provider-call fence of a revocation: a drain that times out is seen (logged and counted), not silent."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from services.common.health import Health
from services.common.stall import StallWatch
from services.notify import metrics
from services.notify.rebalance import Fence, Readiness

pytestmark = pytest.mark.unit


def _fence() -> Fence:
    readiness = Readiness(Health("notify"), ("routine",))
    readiness.assigned("routine")
    return Fence(readiness, StallWatch(60))


def test_a_drain_that_outlasts_its_timeout_is_logged_and_counted() -> None:
    fence = _fence()
    before = metrics.DRAIN_TIMEOUTS._value.get()

    async def scenario() -> None:
        await fence.enter()  # a provider call under way that does not finish in time
        await fence.drained(0.05)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert metrics.DRAIN_TIMEOUTS._value.get() == before + 1
    assert [(e["event"], e["calls_under_way"]) for e in logs] == [("notify.drain_timeout", 1)]


def test_a_drain_that_completes_is_neither() -> None:
    fence = _fence()
    before = metrics.DRAIN_TIMEOUTS._value.get()

    async def scenario() -> None:
        await fence.enter()
        asyncio.get_running_loop().call_later(0.01, fence.leave)
        await fence.drained(5)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert metrics.DRAIN_TIMEOUTS._value.get() == before and logs == []
