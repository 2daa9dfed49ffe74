"""notify under a broker outage: steady traffic, the broker stopped for 60 s, every notification once afterwards."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata

from schemas.events import Family
from schemas.topics import CANONICAL, Group, group_id, scoped
from schemas.wire import KafkaRecord, encode
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture
from tests.kafkatools import free_port
from tests.notify.conftest import MailSink, StartNotify
from tests.notify.events import dossier
from tests.notify.oracle import CODE, accepted_sends, all_sent, expected_sends, requests_per_key
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
OUTAGE_S = 60
RATE = 5  # events per second, before, during and after the outage
BURST = 40  # events sent at once just before the stop: SMS go out at 2 x RATE, so a queue is draining when it comes


def probe(port: int, path: str) -> int:
    """The HTTP status of notify's `/healthz` or `/readyz` (0: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def last_commit(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    lines = [line for line in text.splitlines() if line.startswith('commune_last_commit_timestamp_seconds{')]
    return float(lines[0].split()[-1]) if lines else 0.0


async def lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` not yet committed by `group` (end offsets minus committed offsets)."""
    conn = KafkaConnection(bootstrap=bootstrap)
    admin = clients.admin(conn)
    consumer = clients.consumer(conn, client_id="tests-lag")
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or
                                                        await _partitions(consumer, topic))]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer: object, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # type: ignore[attr-defined]
    return consumer.partitions_for_topic(topic) or set()  # type: ignore[attr-defined]


async def test_broker_stopped_60s_under_steady_traffic_delivers_each_notification_once(
        own_broker: OwnBroker, namespace: str, start_notify: StartNotify, fake: FakeProviders,  # noqa: F811
        smtp: tuple[MailSink, int]) -> None:
    """Broker down 60 s mid-traffic: not ready meanwhile; afterwards each Idempotency-Key once, lag back to 0."""
    await outage(own_broker, namespace, start_notify, fake, smtp)


async def outage(own_broker: OwnBroker, namespace: str, start_notify: StartNotify,  # noqa: F811
                 fake: FakeProviders, smtp: tuple[MailSink, int], **env: str) -> None:
    bootstrap = own_broker.bootstrap
    names = Names(namespace)
    await ensure_topics(KafkaConnection(bootstrap=bootstrap), names.specs)
    topic = scoped(CANONICAL[Family.DOSSIER], namespace).name
    http_port = free_port()
    # a burst just before the stop leaves a queue of SMS draining when the broker goes, so sends are under way whose
    # ledger entries cannot be written until it is back; faster than the traffic, so the backlog of the outage
    # drains in about 30 s once the broker is back
    start_notify(KAFKA_BOOTSTRAP=bootstrap, NOTIFY_HTTP_PORT=str(http_port),
                 NOTIFY_RATE_PER_S=json.dumps({"sms": RATE * 2, "webhook": 200, "zalo": 200, "email": 50}),
                 **env)
    await eventually_async(lambda: probe(http_port, "/readyz") == 200, timeout=60, interval=0.2,
                           what="notify ready")

    # a producer that waits out the outage: its sends are delivered once the broker is back. Every event has one
    # commune, so one partition: aiokafka's append waits once that partition's batch is full (16 KiB by default, about
    # 15 events) until the batch is sent, and the traffic would stop with the broker; a batch holds the whole outage.
    producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id="tests-traffic",
                                request_timeout_ms=(OUTAGE_S + 60) * 1000, linger_ms=5, max_batch_size=4 * 1024 * 1024)
    await producer.start()
    events = []
    queue: asyncio.Queue[KafkaRecord | None] = asyncio.Queue()
    deliveries: list[asyncio.Future[RecordMetadata]] = []
    stop_traffic = asyncio.Event()

    async def pump() -> None:
        """Hands the events to the producer in order, one at a time: a send that waits for the broker to come back
        holds the pump, not the traffic. (In a CI run the traffic awaited each send and made 0 events during the
        outage.)"""
        while (record := await queue.get()) is not None:
            deliveries.append(await producer.send(topic, record.value, key=record.key, headers=record.headers))
            queue.task_done()

    def send(n: int) -> None:
        event = dossier(f"steady-{n}", code=f"D-ST-{n}")
        queue.put_nowait(encode(event))
        events.append(event)

    async def traffic() -> None:
        """RATE events a second by the clock: a loop held up catches up rather than making fewer. (In a CI run,
        before `aiokafka_compat.pace_failed_metadata`, aiokafka's sender retried the metadata back to back while the
        broker was gone and its partition's leader unknown, logging each failure; the traffic slowed to 3.6 events
        a second.)"""
        began, made = time.monotonic(), 0
        while not stop_traffic.is_set():
            while made < (time.monotonic() - began) * RATE:
                send(len(events))
                made += 1
            await asyncio.sleep(1 / RATE)

    async def pumped() -> None:
        """Every event so far handed to the producer; the pump's error, should it have failed, raised here."""
        joined = asyncio.ensure_future(queue.join())
        await asyncio.wait([joined, pumping], return_when=asyncio.FIRST_COMPLETED)
        joined.cancel()
        if pumping.done():
            pumping.result()

    pumping = asyncio.create_task(pump())
    sender = asyncio.create_task(traffic())
    try:
        await eventually_async(lambda: len(fake.accepted) >= 20, timeout=30, what="notifications before the outage")
        committed_before = await eventually_async(lambda: last_commit(http_port), timeout=10, what="a commit")
        burst = [len(events) + i for i in range(BURST)]
        for n in burst:
            send(n)
        await pumped()
        await producer.flush()
        burst_codes = {f"D-ST-{n}" for n in burst}
        await eventually_async(lambda: any(c in burst_codes for t in fake.texts("/sms") for c in CODE.findall(t)),
                               timeout=20, interval=0.1, what="the burst's first SMS")
        await asyncio.to_thread(own_broker.stop)
        stopped, sent_before = time.monotonic(), len(events)
        await eventually_async(lambda: probe(http_port, "/readyz") == 503, timeout=20, interval=0.2,
                               what="not ready while the broker is gone")
        assert probe(http_port, "/healthz") == 200  # alive all along
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))  # the outage itself: a fixed span
        sent_during = len(events) - sent_before
        await asyncio.to_thread(own_broker.start)
        await eventually_async(lambda: probe(http_port, "/readyz") == 200, timeout=90, interval=0.5,
                               what="ready again after the broker returned")
        await asyncio.sleep(5)  # traffic after the outage
    finally:
        stop_traffic.set()
        await sender
        queue.put_nowait(None)
    await pumping
    await asyncio.gather(*deliveries)
    await producer.stop()

    want = expected_sends(events)  # an SMS and a webhook each, no e-mail
    group = group_id(Group.NOTIFY, namespace)
    await eventually_async(all_sent(fake, want), timeout=90, interval=0.5, what="every notification delivered")
    await eventually_async(lambda: _lag_is_zero(bootstrap, group, topic), timeout=60, interval=1,
                           what="lag back to 0")
    await asyncio.sleep(3)  # late repeats would arrive now
    twice = {k: n for k, n in requests_per_key(fake).items() if n != 1}
    print(f"events {len(events)} ({sent_during} during the outage), notifications {sum(want.values())}, "
          f"provider requests per key != 1: {len(twice)}, mails: {sum(smtp[0].by_id.values())}")
    assert sent_during >= OUTAGE_S * RATE * 0.8  # the traffic went on through the outage
    assert accepted_sends(fake) == want  # nothing lost, no other recipient, no second key for one message
    assert not twice and not smtp[0].by_id
    assert last_commit(http_port) > committed_before  # commits resumed and are exported


async def _lag_is_zero(bootstrap: str, group: str, topic: str) -> bool:
    return await lag(bootstrap, group, topic) == 0

