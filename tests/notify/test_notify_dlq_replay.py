"""`commune-bus notify-dlq list|replay` on the real broker, against a running notify (ADR 0033): a dead-lettered
notification is sent again once its cause is mended, once, however often the replay runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.notification import Audience
from services.cli.notify_letters import letter, replayed
from services.notify import deadletters, rules
from services.notify.fake_providers import FakeProviders
from services.notify.outcomes import PARK_HORIZON
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.kafkatools import free_port, produce, read_all
from tests.notify.conftest import StartNotify, caught_up, publish, ready, statuses
from tests.notify.events import directory, dossier, storm
from tests.notify.oracle import requests_per_key
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
CLI = str(Path(sys.executable).with_name("commune-bus"))


def cli(bootstrap: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "COMMUNE_BUS_NAMESPACE": namespace, "COLUMNS": "200"}
    result = subprocess.run([CLI, "notify-dlq", *args], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


async def replay(bootstrap: str, namespace: str, *filters: str) -> subprocess.CompletedProcess[str]:
    """`notify-dlq replay` in a thread: the running notify sends the replay meanwhile, to the fake providers this
    test's event loop serves (a blocking call there held them, and a 2 s provider timeout could meet it)."""
    return await asyncio.to_thread(cli, bootstrap, namespace, "replay", *filters)


def listed(bootstrap: str, namespace: str, *filters: str) -> list[dict[str, object]]:
    out = cli(bootstrap, namespace, "list", "--json", *filters).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_a_webhook_refused_for_its_signature_is_sent_once_after_the_fix_however_often_replayed(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """The subscriber rejects the signature (401, its secret rotated on one side only): the webhook is dead-lettered,
    with its body (small). Listed as replayable; once the secrets agree, `replay` writes it under a new id to
    commune.notify.replays, in its commune's partition (that of its event), and the running worker sends it: accepted
    once, the event's body as before. A second replay sends nothing, and neither does the same request written again
    after it was sent (what a replay that read the log before another's commit wrote, in the review: the ledger kept
    that later copy, and a restart sent it again). The citizen's SMS, sent the first time, is not sent again."""
    fake.webhook_secrets["prov-08"] = "another-secret"
    worker = start_notify()
    event = dossier("rp-1", code="D-RP-1")
    await publish(kafka_bootstrap, namespace, event)
    [dead] = await read_all(kafka_bootstrap, notify_topics.dlq, expect=1, timeout=40)
    assert dict(dead.headers)["dlq.reason"] == b"http_401" and "dlq.omitted" not in dict(dead.headers)
    [letter] = listed(kafka_bootstrap, namespace, "--reason", "http_401")
    assert letter["channel"] == "webhook" and letter["not_replayable"] is None and letter["replayed"] is False
    assert listed(kafka_bootstrap, namespace, "--channel", "sms") == []
    assert listed(kafka_bootstrap, namespace, "--recipient", "subscriber:prov-08") == [letter]
    assert listed(kafka_bootstrap, namespace, "--recipient", "subscriber:prov-0") == []  # another subscriber's

    fake.webhook_secrets["prov-08"] = "s3cret"  # the secrets agree again
    other = await replay(kafka_bootstrap, namespace, "--reason", "http_401", "--recipient", "subscriber:prov-09")
    assert "replayed 0 dead letters; 0 matching" in other.stderr  # another subscriber's letters only: none
    first = await replay(kafka_bootstrap, namespace, "--reason", "http_401", "--recipient", "subscriber:prov-08")
    assert "replayed 1 dead letter" in first.stderr and "Idempotency-Key" not in first.stderr  # refused: a new key
    hooks = lambda: [r for r in fake.accepted.values() if r.path == "/hooks/prov-08"]  # noqa: E731
    await eventually_async(lambda: len(hooks()) == 1, timeout=60, interval=0.2, what="the webhook sent")
    [hook] = hooks()
    assert hook.body["event"]["id"] == event.id and "applicant" not in hook.body["event"]["data"]

    [written] = await read_all(kafka_bootstrap, notify_topics.replays, expect=1, timeout=10)
    [canonical] = await read_all(kafka_bootstrap, notify_topics.dossier, expect=1, timeout=10)
    assert written.partition == canonical.partition and written.key == event.commune.encode()

    second = await replay(kafka_bootstrap, namespace)
    assert "replayed 0 dead letters; 1 matching were already replayed" in second.stderr
    [again] = listed(kafka_bootstrap, namespace)
    assert again["replayed"] is True
    await produce(kafka_bootstrap, notify_topics.replays, [(written.key, written.value, [])])  # the late copy
    await caught_up(kafka_bootstrap, namespace)
    worker.terminate()  # a restart: the ledger read back from the topic, the late copy still there to read
    worker.wait(30)
    port = free_port()
    start_notify(NOTIFY_HTTP_PORT=str(port))
    # its ledger restored before the statuses are read (every input was committed already: `caught_up` alone
    # returned before the new worker had started, and a copy it sent again would have come after the read)
    await eventually_async(lambda: ready(port), timeout=60, interval=0.5, what="the restarted worker ready")
    await caught_up(kafka_bootstrap, namespace)
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=2))
    sent = [s for s in status if s["outcome"] == "sent"]
    assert sorted(s["channel"] for s in sent) == ["sms", "webhook"]  # the SMS once, the webhook once (new id)
    [replayed] = [s for s in sent if s["channel"] == "webhook"]
    assert replayed["notification_id"] != letter["notification_id"] and replayed["event_id"] == event.id
    assert set(requests_per_key(fake).values()) == {1}


async def test_a_webhook_given_up_after_timeouts_that_reached_the_subscriber_is_not_received_twice_when_replayed(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """The subscriber takes each call but answers after notify's timeout: every attempt timed out, yet the first one
    delivered. The event is nearly 7 days old, so no park is left (`PARK_HORIZON`) and the webhook is dead-lettered
    `retries_exhausted:...`. Replayed once the subscriber answers in time, it goes under a new notification id but the
    original's Idempotency-Key and webhook id, which the subscriber has: it is received once in all (before ADR 0033's
    amendment the replay came under a new key and was received twice)."""
    fake.faults.delay_s = 4.0  # the timeout 2 s: a replay answered at once is not timed out on a loaded machine
    start_notify(NOTIFY_PROVIDER_TIMEOUT_S="2", NOTIFY_RETRY_MAX_ATTEMPTS="2")
    event = dossier("rp-t", code="D-RPT-1")
    event = event.model_copy(update={"time": event.time - PARK_HORIZON + timedelta(minutes=3)})
    await publish(kafka_bootstrap, namespace, event)
    [dead] = await read_all(kafka_bootstrap, notify_topics.dlq, expect=1, timeout=60)
    reason = dict(dead.headers)["dlq.reason"].decode()
    assert reason.startswith("retries_exhausted:") and "Timeout" in reason, reason
    hooks = lambda: [r for r in fake.accepted.values() if r.path == "/hooks/prov-08"]  # noqa: E731
    [first] = hooks()  # the timed-out attempts reached the subscriber: it has the webhook already
    assert first.body["event"]["id"] == event.id

    fake.faults.delay_s = 0
    out = (await replay(kafka_bootstrap, namespace, "--reason", "retries_exhausted")).stderr
    assert "replayed 1 dead letter" in out and "1 under the original's Idempotency-Key" in out, out
    status: list[dict[str, object]] = []

    async def replay_sent() -> bool:
        status[:] = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=1))
        assert any(s["outcome"] == "sent" and s["channel"] == "webhook" for s in status), status  # shown if not
        return True

    await eventually_async(replay_sent, timeout=60, interval=0.5, what="the replay sent")
    [replayed] = [s for s in status if s["outcome"] == "sent" and s["channel"] == "webhook"]
    assert replayed["notification_id"] != first.key and replayed["event_id"] == event.id
    assert hooks() == [first] and fake.replays[first.key] >= 2  # the retry and the replay, answered as repeats


async def test_a_replayed_emergency_is_sent_while_the_routine_lane_is_throttled(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """Replays come through the urgent consumer (ADR 0033, amended): a storm warning's SMS, dead-lettered and replayed
    while ~1,400 routine notifications wait behind gateways limited to 15 a second (the routine consumer paused, its
    backlog over NOTIFY_MAX_PENDING), is sent at once, not after the dossiers' backlog has drained (before, it waited
    in a paused partition of the routine consumer for ~800 sends). The backlog stays under `REPLAY_HEADROOM` and
    `URGENT_HEADROOM` times the limit, as the routine consumer's does with the defaults (20,000, batches of 200): with
    NOTIFY_MAX_PENDING=4 (review) the urgent consumer paused whole too, and the test passed or failed by timing."""
    start_notify(NOTIFY_MAX_PENDING="1000",
                 NOTIFY_RATE_PER_S=json.dumps({"sms": 15, "webhook": 15, "zalo": 15, "email": 15}))
    events = [dossier(f"th-{i}", code=f"D-TH-{i}") for i in range(700)]
    await publish(kafka_bootstrap, namespace, *events)
    await eventually_async(lambda: len(fake.arrivals) >= 30, timeout=60, interval=0.2, what="the routine sends begun")

    [warning] = [r for r in rules.for_event(storm("rp-storm"), directory(), Registry())
                 if r.is_emergency and r.audience is Audience.STAFF]
    value, headers = deadletters.bounded(warning)
    d = letter(0, 7, value, [*headers, ("dlq.reason", b"http_401"), ("dlq.attempts", b"1"),
                             ("dlq.rejected.at", datetime.now(UTC).isoformat().encode())])
    nid, record = replayed(d, notify_topics.dlq)
    await produce(kafka_bootstrap, notify_topics.replays, [(warning.commune.encode(), record, [])])
    await eventually_async(lambda: nid in fake.accepted, timeout=60, interval=0.2, what="the replayed warning sent")
    routine_before = [k for k, _ in fake.arrivals].index(nid)
    assert routine_before < 300, f"{routine_before} routine sends went before the replayed emergency"
    assert set(requests_per_key(fake).values()) == {1}


async def test_a_large_routine_replay_does_not_hold_a_new_storm_warning(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """A replay of many routine dead letters (a subscriber's day of webhooks, after its secret was mended) comes
    through the urgent consumer, beside the announcements: a storm warning published meanwhile is sent at once, not
    after the replay's backlog has drained. The replays filled the routine lane past twice NOTIFY_MAX_PENDING, which
    pauses the whole urgent consumer, announcements included, until it fell under the limit (here ~1,100 routine
    sends, ~11 s; with the defaults 20,000 sends, minutes to hours at a provider's rate)."""
    start_notify(NOTIFY_MAX_PENDING="1000",
                 NOTIFY_RATE_PER_S=json.dumps({"sms": 200, "webhook": 100, "zalo": 200, "email": 200}))
    registry = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": f"{fake.url}/hooks/prov-08",
                                                         "secret": "s3cret"}]})
    hooks = [r for i in range(3000) for r in rules.for_event(dossier(f"big-{i}", code=f"D-BIG-{i}"), directory(),
                                                            registry) if r.channel.value == "webhook"]
    records = []
    for offset, hook in enumerate(hooks):
        value, headers = deadletters.bounded(hook)
        d = letter(0, offset, value, [*headers, ("dlq.reason", b"http_401"), ("dlq.attempts", b"1"),
                                      ("dlq.rejected.at", datetime.now(UTC).isoformat().encode())])
        records.append((hook.commune.encode(), replayed(d, notify_topics.dlq)[1], []))
    await produce(kafka_bootstrap, notify_topics.replays, records)
    await eventually_async(lambda: len(fake.arrivals) >= 20, timeout=60, interval=0.2, what="the replay under way")

    warning = storm("big-storm")
    urgent = {r.notification_id for r in rules.for_event(warning, directory(), Registry()) if r.is_emergency}
    await publish(kafka_bootstrap, namespace, warning)
    await eventually_async(lambda: urgent <= set(fake.accepted), timeout=90, interval=0.2, what="the storm warning")
    keys = [k for k, _ in fake.arrivals]
    before = max(keys.index(nid) for nid in urgent) - len(urgent)
    assert before < 600, f"{before} routine replays went before the storm warning"
