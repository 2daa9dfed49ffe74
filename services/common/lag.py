"""Consumer lag, the same in every service: how many records each partition a service's consumer owns holds beyond
where the consumer has read (`commune_consumer_lag{service,topic,partition}`).

A backlog that stays (a worker that keeps up with nothing more than it reads, a throttle that stays shut, a consumer
stuck behind one slow partition) shows here and nowhere else: a worker can be ready, commit and count what it does
while a day's records wait. ConsumerLagGrowing and ConsumerBacklogPersistent alert on it (infra/prometheus).

The end of a partition is what the broker answers for the consumer's end offsets: the last stable offset for a
read_committed consumer (an open transaction's records are not yet there; a commit marker holds an offset, as in
Kafka's own consumer-groups tool), the high watermark for a read_uncommitted one. One request a round, not the ends
the last fetch saw: aiokafka fetches no partition whose fetched records wait unread, so those would stay stale exactly
while a consumer is stuck. The position is where the consumer's next record comes from, so what a worker has taken
and holds (intake's validated batch, notify's queued notifications, which have gauges of their own) counts as read.
While the broker does not answer, the last figures stay. A partition the consumer no longer owns loses its series
at the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from prometheus_client import Gauge

LAG = Gauge("commune_consumer_lag", "Offsets beyond the consumer's position in each partition it owns, up to the end "
            "the broker answers (the last stable offset for read_committed), every 5 s",
            ["service", "topic", "partition"])

EVERY_S = 5.0
"""How often `watch` looks (Prometheus scrapes every 15 s)."""
ASK_TIMEOUT_S = 2.0
"""How long the end offsets, or a position still to fetch (a partition just assigned), are waited for."""


class LagGauge:
    """One service's lag series: `observe` sets those of the partitions its consumers own now and removes the rest."""

    def __init__(self, service: str, owns: Callable[[TopicPartition], bool] = lambda tp: True) -> None:
        self.service, self.owns = service, owns
        """`owns`: which of a consumer's partitions to show (metrics: those it has restored and exports; in an eager
        rebalance aiokafka keeps the old assignment until the new one arrives, so a revoked partition would be
        shown again beside its new owner's)."""
        self._shown: set[TopicPartition] = set()

    async def observe(self, consumers: Iterable[AIOKafkaConsumer]) -> None:
        owned: set[TopicPartition] = set()
        for consumer in consumers:
            partitions = sorted(tp for tp in consumer.assignment() if self.owns(tp))
            if not partitions:
                continue
            try:
                async with asyncio.timeout(ASK_TIMEOUT_S):
                    ends = await consumer.end_offsets(partitions)
            except (TimeoutError, KafkaError):  # the broker does not answer: the last figures stay until it does
                owned |= self._shown & set(partitions)
                continue
            for tp, end in ends.items():
                position = await _position(consumer, tp)
                if position is None:
                    continue
                owned.add(tp)
                LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, end - position))
        for tp in self._shown - owned:
            _remove(self.service, tp)
        self._shown = owned

    def forget(self) -> None:
        """Remove every series of this service's (its partitions were revoked, or its run ended)."""
        for tp in self._shown:
            _remove(self.service, tp)
        self._shown = set()

    async def watch(self, consumers: Sequence[AIOKafkaConsumer], every_s: float = EVERY_S) -> None:
        """`observe` every `every_s` seconds until cancelled (a supervised task); the series go with it."""
        try:
            while True:
                await self.observe(consumers)
                await asyncio.sleep(every_s)
        finally:
            self.forget()


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Where `consumer` reads `tp` next; None if it no longer owns it, or has no position yet in time."""
    try:
        async with asyncio.timeout(ASK_TIMEOUT_S):  # a position still to fetch waits on the broker
            return await consumer.position(tp)
    except (IllegalStateError, TimeoutError):  # revoked meanwhile, or the broker does not answer: next round
        return None


def _remove(service: str, tp: TopicPartition) -> None:
    with contextlib.suppress(KeyError):  # never set, or removed already
        LAG.remove(service, tp.topic, str(tp.partition))
