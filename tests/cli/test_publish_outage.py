"""`commune-bus publish` ends when its broker stops answering mid-publish, instead of waiting for it for ever."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator, Sequence

import pytest
from aiokafka.errors import KafkaTimeoutError

from schemas.topics import RAW_DOSSIER, TopicSpec, scoped
from services.cli import kafka_io
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]


class FrozenAfterFirst(Sequence[kafka_io.Record]):
    """Records whose reading freezes the broker (SIGSTOP) once the first was sent: the producer has started and
    knows the topic, the broker then accepts nothing more and answers nothing."""

    def __init__(self, records: list[kafka_io.Record], broker_pid: int) -> None:
        self.records, self.broker_pid = records, broker_pid

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> kafka_io.Record:  # type: ignore[override]
        return self.records[index]

    def __iter__(self) -> Iterator[kafka_io.Record]:
        yield self.records[0]
        os.kill(self.broker_pid, signal.SIGSTOP)
        yield from self.records[1:]


async def quick_stall(broker: OwnBroker, monkeypatch: pytest.MonkeyPatch) -> tuple[KafkaConnection, TopicSpec, int]:
    """A stall given up after 2 s (and the producer's stop after 2 s), a raw topic of a fresh namespace on the broker,
    and the broker's process id."""
    monkeypatch.setattr(kafka_io, "ACK_STALL_S", 2.0, raising=False)
    monkeypatch.setattr(kafka_io, "STOP_TIMEOUT_S", 2.0, raising=False)
    conn = KafkaConnection(bootstrap=broker.bootstrap)
    topic = scoped(RAW_DOSSIER, "pub" + naming.unique())
    await ensure_topics(conn, [topic])
    return conn, topic, int((broker.state / "kafka.pid").read_text())

async def test_publish_gives_up_once_the_broker_stops_acknowledging(
        own_broker: OwnBroker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A broker frozen mid-publish ends `publish` with a KafkaTimeoutError (said in one line, exit 1) once no
    acknowledgement came for `ACK_STALL_S`, its producer's stop given up after `STOP_TIMEOUT_S`. Before, it waited
    for ever: the idempotent producer retried the batch as long as the broker was frozen, and its stop waited for it
    (still waiting after 150 s)."""
    conn, topic, pid = await quick_stall(own_broker, monkeypatch)
    records = FrozenAfterFirst([(b"c1", b"{}", []), (b"c2", b"{}", [])], pid)
    publishing = asyncio.create_task(kafka_io.publish(conn, topic.name, records, lambda _: None))
    try:
        done, _ = await asyncio.wait({publishing}, timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)  # the old code's publish then ends too, with its records acknowledged
        await asyncio.wait({publishing}, timeout=60)
    assert publishing in done, "publish still waiting 60 s after the broker froze"
    assert isinstance(publishing.exception(), KafkaTimeoutError)


class StoppedAfterFirst(FrozenAfterFirst):
    """Records whose reading stops the broker (`kafka.sh stop`) once the first was sent."""

    def __init__(self, records: list[kafka_io.Record], broker: OwnBroker) -> None:
        super().__init__(records, 0)
        self.broker = broker

    def __iter__(self) -> Iterator[kafka_io.Record]:
        yield self.records[0]
        self.broker.stop()
        yield from self.records[1:]


@pytest.mark.parametrize("outage", ["frozen", "stopped"])
async def test_publish_says_how_many_were_acknowledged_when_the_buffer_stays_full(
        own_broker: OwnBroker, monkeypatch: pytest.MonkeyPatch, outage: str) -> None:  # noqa: F811
    """Records enough to fill the producer's buffer (one partition, ~400 KB), the broker frozen (SIGSTOP) or stopped
    after the first: `publish` ends once no acknowledgement came for `ACK_STALL_S`, with `Unacknowledged` saying how
    many records were acknowledged. Before, each send waited for room in the buffer, which came a batch at a time as
    aiokafka expired one unsent (every 40 s): still sending 150 s after the broker stopped (CLI trial, 100,000
    records), or aiokafka's bare KafkaTimeoutError, said with a hint to check the bootstrap."""
    conn, topic, pid = await quick_stall(own_broker, monkeypatch)
    many = [(b"02269", b'{"n": "' + b"x" * 2000 + b'"}', []) for _ in range(200)]
    records = FrozenAfterFirst(many, pid) if outage == "frozen" else StoppedAfterFirst(many, own_broker)
    publishing = asyncio.create_task(kafka_io.publish(conn, topic.name, records, lambda _: None))
    try:
        done, _ = await asyncio.wait({publishing}, timeout=30)
    finally:
        if outage == "frozen":
            os.kill(pid, signal.SIGCONT)
        publishing.cancel()
        await asyncio.wait({publishing}, timeout=60)
    assert publishing in done, "publish still sending 30 s after the broker froze or stopped"
    error = publishing.exception()
    assert isinstance(error, kafka_io.Unacknowledged), repr(error)
    assert "of 200 records acknowledged" in str(error)
