"""The metrics process killed mid-stream (SIGKILL): its successor restores from the changelog and exports the truth."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from schemas.topics import Group, group_id
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.metrics.topics import Names
from tests.cluster.tools import scrape
from tests.kafkatools import free_port, start_service, stop_service
from tests.metrics.golden import event_set, expected, restricted, summed
from tests.metrics.test_metrics_kafka import publish
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(180)]
BATCH = 10
"""Records per batch: each batch ends in changelog transactions and an offset commit that the next one waits for, so
small batches keep the stream going for many commits after the first is applied, and the kill lands in it."""


async def committed_records(bootstrap: str, group: str) -> int:
    """How many input records `group` has committed (its topics are the test's own, written from offset 0)."""
    admin = clients.admin(KafkaConnection(bootstrap=bootstrap), client_id="tests")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(o.offset for o in offsets.values() if o.offset > 0)


async def test_sigkill_mid_stream_then_restart_exports_exact_figures(kafka_bootstrap: str, unique: str,
                                                                     tmp_path: Path) -> None:
    """Killed while applying (changelog ahead of committed offsets), a new process still converges exactly."""
    namespace = f"k{unique}"
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), Names(namespace).specs)
    events = event_set(seed=99)  # ~450 events incl. duplicates, applied BATCH per batch
    port = free_port()
    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "METRICS_NAMESPACE": namespace, "METRICS_HTTP_PORT": str(port),
           "METRICS_STATE_DIR": str(tmp_path / "state"), "METRICS_BATCH_MAX_RECORDS": str(BATCH)}
    first = start_service("services.metrics", env, tmp_path / "first.log")
    try:
        def owns_every_partition() -> bool:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            return "commune_metrics_owned_partitions 6.0" in scrape(port)

        await eventually_async(owns_every_partition, timeout=60, interval=0.2, what="the first process assigned")
        await publish(kafka_bootstrap, namespace, events)
        await eventually_async(lambda: 'outcome="applied"' in scrape(port), timeout=30, interval=0.01,
                               what="the first process applying")  # killed once it has started applying
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop_service(first)
    committed = await committed_records(kafka_bootstrap, group_id(Group.METRICS, namespace))
    print(f"committed at the kill: {committed} of {len(events)} records")
    assert committed < len(events), "the kill must land mid-stream: everything was committed already"
    truth = expected(events, now=time.time())  # the process reads the wall clock for overdue
    second = start_service("services.metrics", env, tmp_path / "second.log")
    try:
        def exact() -> bool:
            assert restricted(summed(scrape(port)), truth) == truth
            return True

        await eventually_async(exact, timeout=60, interval=0.3, what="the second process's exact figures")
        restored = [line for line in scrape(port).splitlines()
                    if line.startswith("commune_metrics_restored_records_total")]
        assert restored and float(restored[0].split()[1]) > 0  # state came back from the changelog
    finally:
        stop_service(second)
