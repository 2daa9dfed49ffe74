"""metrics, two workers, one frozen (SIGSTOP) past the session timeout, then resumed: figures exact, also restored.

Run twice: as deployed (stall watch and changelog fence), and with the stall watch blinded
(`tests.metrics.unwatched`), where only the fence keeps the woken worker's late writes out (ADR 0016): without
the fence that run ends with wrong restored figures.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from schemas.envelope import Event
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.metrics.topics import Names
from tests.kafkatools import free_port, start_service, stop_service
from tests.metrics.golden import event_set, expected, restricted, summed
from tests.metrics.test_metrics_kafka import publish
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
PAUSE_S = 14  # the session is 6 s


def scrape(port: int, path: str = "/metrics") -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return str(resp.read().decode())
    except (urllib.error.HTTPError, OSError):
        return ""


async def paced(bootstrap: str, namespace: str, events: list[Event], per_second: float) -> None:
    chunk = 10
    for i in range(0, len(events), chunk):
        await publish(bootstrap, namespace, events[i:i + chunk])
        await asyncio.sleep(chunk / per_second)


@pytest.mark.parametrize("module", ["services.metrics", "tests.metrics.unwatched"], ids=["deployed", "fence-only"])
async def test_worker_frozen_past_session_timeout_keeps_figures_exact_and_restorable(
        kafka_bootstrap: str, unique: str, tmp_path: Path, module: str) -> None:
    """SIGSTOP 14 s mid-stream, then SIGCONT: summed figures equal the oracle, and so do a fresh worker's restored."""
    namespace = f"p{unique}"
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), Names(namespace).specs)
    events = event_set(seed=7)
    ports = [free_port(), free_port()]
    base = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "METRICS_NAMESPACE": namespace,
            "METRICS_STATE_DIR": str(tmp_path / "state"), "METRICS_BATCH_MAX_RECORDS": "20",
            "METRICS_SESSION_TIMEOUT_MS": "6000", "METRICS_HEARTBEAT_INTERVAL_MS": "2000"}
    procs = [start_service(module, {**base, "METRICS_HTTP_PORT": str(p), "METRICS_WORKER_ID": f"w{i}"},
                           tmp_path / f"w{i}.log") for i, p in enumerate(ports)]
    fresh = None
    try:
        def owned(*ps: int) -> float:
            return sum(float(line.split()[1]) for p in ps or ports for line in scrape(p).splitlines()
                       if line.startswith("commune_metrics_owned_partitions "))

        await eventually_async(lambda: owned() == 6, timeout=90, interval=0.3, what="6 partitions between two")
        traffic = asyncio.create_task(paced(kafka_bootstrap, namespace, events, per_second=20))
        await asyncio.sleep(4)  # the fault comes mid-stream: a fixed point in the traffic
        procs[0].send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        # bounded apart from the pause (the session, a rejoin, fenced producers' starts and a restore had to fit in
        # it on a loaded machine: a helper's review of the tests' timing); a slow takeover lengthens the pause
        await eventually_async(lambda: owned(ports[1]) == 6, timeout=60, interval=0.3,
                               what="the other worker owns everything")
        await asyncio.sleep(max(0.0, PAUSE_S - (time.monotonic() - frozen_at)))
        procs[0].send_signal(signal.SIGCONT)
        await traffic
        truth = expected(events, now=time.time())

        def exact(*ps: int) -> bool:
            assert restricted(summed(*(scrape(p) for p in ps)), truth) == truth
            return True

        await eventually_async(lambda: owned() == 6 and exact(*ports), timeout=90, interval=0.5,
                               what="both workers' summed figures exact")
        for proc in procs:
            assert proc.poll() is None, "a worker exited"
            stop_service(proc)
        port = free_port()
        fresh = start_service("services.metrics", {**base, "METRICS_HTTP_PORT": str(port),
                                                   "METRICS_STATE_DIR": str(tmp_path / "fresh")},
                              tmp_path / "fresh.log")
        await eventually_async(lambda: exact(port), timeout=90, interval=0.5,
                               what="a fresh worker's figures, restored from the changelog, exact")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
            stop_service(proc)
        if fresh is not None:
            stop_service(fresh)
