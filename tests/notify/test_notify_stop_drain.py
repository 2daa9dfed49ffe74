"""notify, two workers under a steady stream and a slow provider, one stopped (SIGTERM): each id sent once."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from schemas.events import Family
from schemas.topics import CANONICAL, scoped
from schemas.wire import encode
from services.common import clients
from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from tests.kafkatools import free_port
from tests.notify.conftest import MailSink, StartNotify, caught_up
from tests.notify.events import dossier, one_commune_per_partition
from tests.notify.oracle import accepted_sends, all_sent, expected_sends, requests_per_key
from tests.notify.test_notify_pause import ready
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
RATE = 10  # events per second, two calls each: more than the two workers' senders answer
SENDERS = 8
CALL_S = 1.0
"""How long the provider takes to answer: calls are under way and jobs queued when the stop comes."""
STREAM_AFTER_STOP_S = 6
"""The stream goes on this long after the stopped worker is gone: the other takes its partitions over (its next
heartbeat, 3 s, sees the rebalance) while records keep coming. Not longer: one worker's 8 senders answer 8 calls a
second, so each further second of stream is over 2 s of sending after it (a fixed 24 s stream took 70 s a run)."""


async def test_sigterm_under_load_sends_no_notification_twice(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        smtp: tuple[MailSink, int]) -> None:
    """SIGTERM to one of two workers while its calls are under way and jobs queued: it exits 0, the other takes its
    partitions over, and every notification reaches the provider once (ADR 0012): none is started after the
    stopping worker's consumers left, none is cut off in doubt and sent again by the next owner."""
    fake.faults.delay_s = CALL_S
    ports = [free_port(), free_port()]
    env = {"NOTIFY_ROUTINE_WORKERS": str(SENDERS), "NOTIFY_DRAIN_S": "10", "NOTIFY_PROVIDER_TIMEOUT_S": "4",
           "NOTIFY_RATE_PER_S": json.dumps({"sms": 200, "webhook": 200, "zalo": 200, "email": 50})}
    workers = [start_notify(NOTIFY_HTTP_PORT=str(p), **env) for p in ports]
    await eventually_async(lambda: all(ready(p) for p in ports), timeout=90, interval=0.3, what="both workers ready")

    communes = one_commune_per_partition()  # both workers have work, whichever partitions each holds
    topic = scoped(CANONICAL[Family.DOSSIER], namespace).name
    producer = clients.producer(KafkaConnection(bootstrap=kafka_bootstrap), client_id="tests-traffic", linger_ms=5)
    await producer.start()
    events, futures = [], []
    stream_end = [float("inf")]  # set once the stopped worker is gone

    async def traffic() -> None:
        while time.monotonic() < stream_end[0]:
            n = len(events)
            event = dossier(f"stop-{n}", code=f"D-ST-{n}", commune=communes[n % len(communes)])
            rec = encode(event)
            futures.append(await producer.send(topic, rec.value, key=rec.key, headers=rec.headers))
            events.append(event)
            await asyncio.sleep(1 / RATE)

    sender = asyncio.create_task(traffic())
    stopped = workers[0]
    try:
        await eventually_async(lambda: len(fake.accepted) >= 60, timeout=60, what="sending before the stop")
        requested_at_stop = fake.requests
        stopped.terminate()
        began = time.monotonic()
        await eventually_async(lambda: stopped.poll() is not None, timeout=60, interval=0.2,
                               what="the stopped worker ends")
        took = time.monotonic() - began
        stream_end[0] = time.monotonic() + STREAM_AFTER_STOP_S
        await sender
    finally:
        if not sender.done():
            sender.cancel()
    await asyncio.gather(*futures)
    await producer.stop()

    want = expected_sends(events)  # an SMS and a webhook each, no e-mail
    await eventually_async(all_sent(fake, want), timeout=180, interval=0.5, what="every notification delivered")
    await caught_up(kafka_bootstrap, namespace)  # all committed: nothing in flight, a second request would be counted
    per_key = requests_per_key(fake)
    twice = {k: n for k, n in per_key.items() if n > 1}
    print(f"events {len(events)}, notifications {sum(want.values())}, requests at SIGTERM {requested_at_stop}, "
          f"stop took {took:.1f} s, exit {stopped.returncode}; ids sent more than once: {len(twice)} "
          f"({sum(twice.values()) - len(twice)} extra requests)")
    assert stopped.returncode == 0
    assert accepted_sends(fake) == want  # nothing lost, no other recipient, no second key for one message
    assert not twice, twice
    assert not smtp[0].by_id
