"""The consumer lag gauge's failure paths (services/common/lag.py) with a consumer that fails on cue: a broker that does
not answer keeps the last figures; a partition revoked while its position was asked loses its series; no error of
the kind a broker outage raises ends the supervised task. (Its figures on a real broker: test_lag_kafka.py.)"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError
from prometheus_client import REGISTRY

from services.common import lag
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class Consumer:
    def __init__(self) -> None:
        self.owned = {A, B}
        self.ends = {A: 10, B: 4}
        self.positions = {A: 3, B: 4}
        self.broker_up = True
        self.revoked_on_position: TopicPartition | None = None
        self.position_hangs = False
        self.asked = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not self.broker_up:
            raise KafkaConnectionError("broker gone")
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        self.asked += 1
        if tp == self.revoked_on_position:
            self.owned.discard(tp)
            raise IllegalStateError(f"Partition {tp} is not assigned")
        if self.position_hangs:
            await asyncio.Event().wait()
        return self.positions[tp]


def shown(service: str, tp: TopicPartition) -> float | None:
    return REGISTRY.get_sample_value("commune_consumer_lag", {"service": service, "topic": tp.topic,
                                                              "partition": str(tp.partition)})


async def test_a_broker_that_does_not_answer_keeps_the_last_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, gauge = Consumer(), lag.LagGauge("test-lag-outage")
    await gauge.observe([consumer])  # type: ignore[list-item]
    assert (shown(gauge.service, A), shown(gauge.service, B)) == (7, 0)
    consumer.broker_up, consumer.ends[A] = False, 50
    await gauge.observe([consumer])  # type: ignore[list-item]
    assert (shown(gauge.service, A), shown(gauge.service, B)) == (7, 0)  # unknown now: the last figures stay
    consumer.broker_up = True
    await gauge.observe([consumer])  # type: ignore[list-item]
    assert shown(gauge.service, A) == 47


async def test_a_partition_revoked_while_its_position_is_asked_loses_its_series() -> None:
    consumer, gauge = Consumer(), lag.LagGauge("test-lag-revoked")
    await gauge.observe([consumer])  # type: ignore[list-item]
    consumer.revoked_on_position = A
    await gauge.observe([consumer])  # type: ignore[list-item]
    assert shown(gauge.service, A) is None and shown(gauge.service, B) == 0


async def test_a_position_that_never_comes_is_given_up_and_the_watch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag, "ASK_TIMEOUT_S", 0.05)
    consumer, gauge = Consumer(), lag.LagGauge("test-lag-hangs")
    consumer.position_hangs = True
    watch = asyncio.ensure_future(gauge.watch([consumer], every_s=0.01))  # type: ignore[list-item]
    await eventually_async(lambda: consumer.asked >= 6, what="three rounds of positions that never come")
    assert not watch.done() and shown(gauge.service, A) is None  # given up, not failed: it would end the run
    consumer.position_hangs = False
    await eventually_async(lambda: shown(gauge.service, A) == 7, what="the figures once positions come")
    assert not watch.done()
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    assert shown(gauge.service, A) is None
