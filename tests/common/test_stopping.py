"""The runtime's stop (services/common/stopping.py): readiness falls at the first signal, and the stop is logged."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from services.common import stopping
from services.common.health import Health
from services.common.runtime import Supervisor, serve
from services.common.settings import ServiceSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        monkeypatch.setattr(stopping, "log", structlog.get_logger("runtime"))
        yield captured


async def test_the_first_signal_makes_the_service_not_ready_for_good(logs: list[MutableMapping[str, Any]]) -> None:
    """At SIGTERM `/readyz` says 503 "stopping" while the worker still runs, and a worker's loop saying ready during
    the stop does not turn it 200 again; the stop is logged with its signal, and its end with the time it took."""
    health = Health("stopping-test")
    seen: list[tuple[bool, str]] = []

    async def worker(supervisor: Supervisor) -> None:
        supervisor.health.set_ready(True, "consuming")
        os.kill(os.getpid(), signal.SIGTERM)
        await supervisor.stop.wait()
        seen.append((health.ready, health.detail))
        supervisor.health.set_ready(True, "consuming")  # a rebalance completing while the worker stops
        seen.append((health.ready, health.detail))

    await asyncio.wait_for(serve("stopping-test", ServiceSettings(http_port=0), worker, health=health), timeout=10)
    assert seen == [(False, "stopping"), (False, "stopping")]
    events = [(e["event"], e.get("by")) for e in logs if e["event"].startswith("service.")]
    assert events == [("service.stop_requested", "SIGTERM"), ("service.stopped", None)]
    assert [e["stop_s"] >= 0 for e in logs if e["event"] == "service.stopped"] == [True]
