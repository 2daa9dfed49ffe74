"""metrics on the 3-broker cluster: a broker SIGKILLed mid-stream and brought back; the figures stay exact."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from schemas import wire
from schemas.events import FAMILY_OF_TYPE
from schemas.topics import CANONICAL, scoped
from tests.cluster.tools import Feeder, Sent, Tally, metric_sum, scrape
from tests.faults import Cluster
from tests.kafkatools import free_port, start_service, stop_service
from tests.metrics.golden import event_set, expected, restricted, summed
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
KILLED = 2


def test_broker_killed_mid_stream_keeps_figures_exact(cluster: Cluster, cluster_namespace: str,
                                                      tmp_path: Path) -> None:
    """SIGKILL of one of three brokers while metrics applies and commits: after it returns, the scraped figures
    equal the independent oracle's (tests/metrics/golden.py), none above (counted twice), none below (lost)."""
    bootstrap, ns = cluster.bootstrap, cluster_namespace
    events = event_set(seed=7)  # ~480 events over 8 communes, a quarter re-sent, shuffled
    sent: list[Sent] = []
    for e in events:
        rec = wire.encode(e)
        sent.append((scoped(CANONICAL[FAMILY_OF_TYPE[e.type]], ns).name, rec.key, rec.value, rec.headers))
    port = free_port()
    proc = start_service("services.metrics", {
        "KAFKA_BOOTSTRAP": bootstrap, "METRICS_NAMESPACE": ns, "METRICS_HTTP_PORT": str(port),
        "METRICS_STATE_DIR": str(tmp_path / "state"), "METRICS_BATCH_MAX_RECORDS": "50"}, tmp_path / "metrics.log")

    def applied() -> float:
        assert proc.poll() is None, (tmp_path / "metrics.log").read_text()[-3000:]
        return metric_sum(scrape(port), "commune_metrics_events_total")

    def owns_every_partition() -> bool:
        assert proc.poll() is None, (tmp_path / "metrics.log").read_text()[-3000:]
        return "commune_metrics_owned_partitions 6.0" in scrape(port)

    async def scenario() -> float:
        await eventually_async(owns_every_partition, timeout=90, interval=0.2, what="metrics assigned")
        feeder = Feeder(bootstrap, sent, per_second=10, hold_last=100)
        feeding = asyncio.create_task(feeder.run())
        await eventually_async(lambda: applied() >= 80, timeout=60, interval=0.2, what="metrics applying")
        before = applied()
        killed_at = await asyncio.to_thread(cluster.kill_node, KILLED)
        print(f"\nbroker {KILLED} killed after {feeder.acked} events acknowledged, {before:g} applied")
        restarting = asyncio.create_task(asyncio.to_thread(cluster.start_node, KILLED))
        await eventually_async(lambda: applied() > before + 10, timeout=90, interval=0.1,
                               what="metrics applying again")
        recovered_s = time.monotonic() - killed_at
        await restarting
        print(f"metrics applying again {recovered_s:.1f} s after the kill; broker {KILLED} back after "
              f"{time.monotonic() - killed_at:.1f} s, {feeder.acked} events acknowledged")
        assert not feeding.done(), "the broker must come back while events still flow"
        feeder.release.set()  # the last 100 go through the cluster restored
        await feeding
        return recovered_s

    try:
        recovered_s = asyncio.run(scenario())
        truth = expected(events, now=time.time())  # the service decides overdue against the wall clock
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        def exact() -> bool:
            got.clear()
            got.update(restricted(summed(scrape(port)), truth))
            assert got == truth
            return True

        with contextlib.suppress(AssertionError):  # the tally below says how far off, series by series
            asyncio.run(eventually_async(exact, timeout=60, interval=0.3, what="exact figures"))
        restarts = metric_sum(scrape(port), "commune_service_restarts_total")
        assert proc.poll() is None, "metrics must ride through the broker kill"
    finally:
        stop_service(proc)
    below = sum(1 for k, v in truth.items() if got.get(k, 0.0) < v)
    above = sum(1 for k, v in got.items() if v > truth.get(k, 0.0))
    # metrics merges are order-independent: out-of-order does not apply; lost/duplicated count series
    tally = Tally("cluster: metrics, broker 2 SIGKILLed and restarted (series below/above the oracle)",
                  len(events), below, above, None, recovered_s, restarts)
    print(tally.line())
    assert got == truth, tally.line()
