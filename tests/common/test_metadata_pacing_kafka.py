"""A producer holding a batch for a partition without a known leader, its broker gone: aiokafka asks for metadata
again at once after each failure unless `aiokafka_compat.pace_failed_metadata` makes it wait its retry backoff."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka.admin import NewTopic

from services.common import clients
from services.common.settings import KafkaConnection
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
WATCH_S = 3.0


class Failures(logging.Handler):
    """Counts aiokafka's "Unable to update metadata" records: one a failed metadata update."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("Unable to update metadata")


async def test_a_producer_retries_metadata_after_its_backoff_while_the_broker_is_gone(
        own_broker: OwnBroker) -> None:  # noqa: F811
    """The broker stopped, the partition's leader unknown (as a broker shutting down answers), a record waiting:
    over 3 s at most one failed update per retry backoff (100 ms), and the loop's CPU near idle. Without the pacing
    (`clients` not calling it): 9,870 failed updates in the same 3 s, on the secure broker."""
    conn = KafkaConnection(bootstrap=own_broker.bootstrap)
    admin = clients.admin(conn)
    await admin.start()
    await admin.create_topics([NewTopic("pacing", 1, 1)])
    await admin.close()
    producer = clients.producer(conn, client_id="tests-pacing", request_timeout_ms=60_000)
    await producer.start()
    failures, log = Failures(), logging.getLogger("aiokafka")
    log.addHandler(failures)
    try:
        await (await producer.send("pacing", b"before", key=b"k"))
        await asyncio.to_thread(own_broker.stop)
        cluster = producer.client.cluster
        partition = cluster._partitions["pacing"][0]  # type: ignore[attr-defined]
        cluster._partitions["pacing"][0] = partition._replace(leader=-1)  # type: ignore[attr-defined]
        waiting = asyncio.ensure_future(producer.send("pacing", b"during", key=b"k"))
        counted, cpu, began = failures.count, time.process_time(), time.monotonic()
        await asyncio.sleep(WATCH_S)
        failed, used = failures.count - counted, time.process_time() - cpu
        assert failed <= WATCH_S / 0.1 + 5, f"{failed} failed metadata updates in {WATCH_S:g} s"
        assert used < WATCH_S / 3, f"{used:.1f} s of CPU in {time.monotonic() - began:.1f} s"
        await asyncio.to_thread(own_broker.start)
        await asyncio.wait_for(await waiting, 60)  # delivered once the broker is back
    finally:
        log.removeHandler(failures)
        await asyncio.wait_for(producer.stop(), 60)
