"""A restore longer than the session timeout (a changelog of hundreds of thousands of states) on the real broker: the
worker stays in its group, commits, and is not restarted (runtime audit finding 1: metrics restored inside
`on_partitions_assigned`, where aiokafka sends no heartbeat; evicted, its first commit refused with
`CommitFailedError`, the run restarted with a fresh restore, and so on: 0 commits and 6 restarts in 75 s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common import clients
from services.common.admin import ensure_topics
from services.common.health import Health
from services.common.runtime import supervise
from services.metrics import ownership
from services.metrics.settings import MetricsSettings
from services.metrics.worker import MetricsWorker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
RESTORE_S = 9.0
"""How long the restore takes: past the session timeout below."""


def restarts() -> float:
    return sum(s.value for m in REGISTRY.collect() if m.name == "commune_service_restarts" for s in m.samples
               if s.name.endswith("_total") and s.labels.get("service") == "metrics-slow-restore")


async def test_a_restore_past_the_session_timeout_keeps_the_worker_in_its_group(
        kafka_bootstrap: str, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = MetricsSettings(bootstrap=kafka_bootstrap, namespace=f"m{unique}", session_timeout_ms=6000,
                               heartbeat_interval_ms=2000, state_dir=tmp_path, http_port=0)
    original = ownership.read_to_end

    async def slow_read_to_end(*args: Any, **kwargs: Any) -> int:  # a changelog that takes RESTORE_S to read
        await asyncio.sleep(RESTORE_S)
        return await original(*args, **kwargs)

    monkeypatch.setattr(ownership, "read_to_end", slow_read_to_end)
    worker = MetricsWorker(settings)
    await ensure_topics(settings.connection(), worker.names.specs)
    stop, health = asyncio.Event(), Health("metrics-slow-restore")
    before = restarts()
    run = asyncio.create_task(supervise("metrics-slow-restore", worker.run, stop, health))
    producer = clients.producer(settings.connection(), client_id="tests-slow-restore")
    await producer.start()
    topic = next(iter(worker.names.family_of))
    try:
        started = time.monotonic()
        # a record every 0.5 s through the restore, then until 5 batches are committed: evicted during the restore,
        # the worker's first commit after it is refused and the run restarts (a fixed 15 s more took 24 s a run)
        while health.progress < 5 and time.monotonic() - started < RESTORE_S + 45 and not run.done():
            await producer.send_and_wait(topic, b"not-an-event", key=b"02269")
            await asyncio.sleep(0.5)
        assert health.progress >= 5, f"{health.progress} commits after the restore (the run ended: {run.done()})"
        assert restarts() == before, "the run was restarted (evicted from its group during the restore?)"
        assert health.ready, health.detail
    finally:
        await producer.stop()
        stop.set()
        await asyncio.wait({run}, timeout=40)
