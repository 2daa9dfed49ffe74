"""The consumer lag gauge (services/common/lag.py) on the real broker: records beyond the position up to what a
read_committed consumer can reach, open transactions excluded; the series of a partition no longer owned go."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from services.common import clients, lag
from services.common.settings import KafkaConnection
from tests.common.conftest import NewTopicOf
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


def shown(service: str, tp: TopicPartition) -> float | None:
    return REGISTRY.get_sample_value("commune_consumer_lag", {"service": service, "topic": tp.topic,
                                                              "partition": str(tp.partition)})


async def test_lag_counts_what_the_consumer_has_not_read_and_no_open_transaction(
        conn: KafkaConnection, new_topic: NewTopicOf, unique: str, service: str) -> None:
    topic = await new_topic("lag", 2)
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = clients.producer(conn, client_id="tests")
    txn = clients.transactional_producer(conn, transactional_id=f"test-lag-{unique}", client_id="tests")
    consumer = clients.consumer(conn, client_id="tests")
    await producer.start()
    await txn.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
        for i in range(4):
            await producer.send_and_wait(topic, b"%d" % i, partition=1)
        await txn.begin_transaction()  # open: beyond the last stable offset, not counted until it commits
        for i in range(6):
            await txn.send_and_wait(topic, b"open %d" % i, partition=0)
        consumer.assign([first, second])
        await consumer.start()
        read = await consumer.getmany(first, timeout_ms=5000, max_records=3)
        assert len(read.get(first, [])) == 3
        gauge = lag.LagGauge(service)

        async def observed() -> bool:
            await gauge.observe([consumer])
            return shown(service, first) == 7 and shown(service, second) == 4
        await eventually_async(observed, what="lag 7 (10 committed, 3 read) and 4 (none read)", timeout=20)
        only = lag.LagGauge(f"{service}-owns", owns=lambda tp: tp == second)  # metrics: the partitions it exports
        await only.observe([consumer])
        assert shown(only.service, first) is None and shown(only.service, second) == 4

        await txn.commit_transaction()  # the 6 become readable: the last stable offset moves past them

        async def committed() -> float | None:
            await gauge.observe([consumer])
            return shown(service, first) if shown(service, first) != 7 else None
        # offsets, as Kafka's own consumer-groups tool counts them: the commit marker holds one too
        assert await eventually_async(committed, what="lag moved once the transaction committed", timeout=20) == 14

        consumer.assign([second])  # the first partition is no longer this consumer's: its series goes
        await gauge.observe([consumer])
        assert shown(service, first) is None
        assert shown(service, second) is not None

        watching = lag.LagGauge(f"{service}-watch")
        watch = asyncio.ensure_future(watching.watch([consumer], every_s=0.05))
        assert await eventually_async(lambda: shown(watching.service, second), what="the watch showing the lag") == 4
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        assert shown(watching.service, second) is None  # a watch that ends takes its series with it
    finally:
        await consumer.stop()
        await txn.stop()
        await producer.stop()
