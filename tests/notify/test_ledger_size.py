"""Notify's ledger entries fit the ledger topic: the webhook of the largest event intake publishes is parked whole, and
a deferral that still would not fit is dead-lettered with a reason and counted, never sent to be refused (audit,
poison input: the refusal ended the sender task, so the run, again after every restart)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from schemas.notification import ChannelKind, NotificationRequest
from schemas.topics import CANONICAL_RECORD_BYTES, NOTIFY_LEDGER, NOTIFY_LEDGER_BYTES
from services.common.clients import FETCH_BYTES
from services.intake.settings import IntakeSettings
from services.notify import metrics
from services.notify.channels.base import DeliveryError
from services.notify.delivery import Dispatcher
from services.notify.jobs import Outputs
from services.notify.ledger import Ledger
from services.notify.ledger_entry import RECORD_OVERHEAD, Entry, encode
from services.notify.outcomes import DEFERRAL_TOO_LARGE
from services.notify.personal import deferrable
from services.notify.policy import Backoff, QuietHours
from services.notify.release import OwnedDispatcher
from tests.notify.fakes import Calls, FakeChannel, FakeProducer, FixedClock, Tasks
from tests.notify.test_dead_letters import TOPIC_LIMIT, huge_dossier_requests
from tests.notify.test_dispatcher import LEDGER, NEVER_QUIET, NOON, OUT

pytestmark = pytest.mark.unit


def huge_webhook() -> NotificationRequest:
    """The webhook of a ~960 kB dossier intake accepts: its body (the event) escaped again in a deferral, ~1.9 MB."""
    [hook] = [r for r in huge_dossier_requests() if r.channel is ChannelKind.WEBHOOK]
    return hook


def too_large_webhook() -> NotificationRequest:
    """The webhook of an event past intake's default canonical limit (`INTAKE_MAX_CANONICAL_BYTES` raised to 2 MB):
    its deferral, ~3.9 MB, passes the ledger topic's limit."""
    hook = huge_webhook()
    return hook.model_copy(update={"notification_id": "b" * 32, "payload": f"[{hook.payload},{hook.payload}]"})


def _too_large_count(channel: str) -> float:
    return metrics.DEFERRALS_TOO_LARGE.labels(channel)._value.get()


def test_the_ledger_topic_takes_the_deferral_of_the_largest_webhook_intake_publishes() -> None:
    """The registry sets the ledger's `max.message.bytes` (the broker's default, 1,048,588, refused the ~1.9 MB entry):
    twice intake's default canonical limit (a body escaped again) and room for the rest of the request, within the
    producer's `max_request_size`; the huge dossier's webhook fits it, deferred."""
    assert IntakeSettings().max_canonical_bytes == CANONICAL_RECORD_BYTES
    assert int(NOTIFY_LEDGER.config["max.message.bytes"]) == NOTIFY_LEDGER_BYTES >= 2 * CANONICAL_RECORD_BYTES
    assert TOPIC_LIMIT < NOTIFY_LEDGER_BYTES <= FETCH_BYTES
    hook = huge_webhook().model_copy(update={"not_before": NOON + timedelta(minutes=10)})
    value = encode(hook.notification_id, Entry(state="deferred", request=deferrable(hook)))
    assert TOPIC_LIMIT < len(value) + RECORD_OVERHEAD <= NOTIFY_LEDGER_BYTES
    assert Ledger(LEDGER, FakeProducer()).fits_deferred(hook)
    assert not Ledger(LEDGER, FakeProducer()).fits_deferred(too_large_webhook())


def _dispatcher(producer: FakeProducer, channel: FakeChannel, tasks: Tasks,
                circuit: tuple[int, float] | None) -> Dispatcher:
    return Dispatcher({ChannelKind.WEBHOOK: channel}, Ledger(LEDGER, producer), producer, OUT, spawn=tasks,
                      backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=2), quiet=NEVER_QUIET,
                      rates={"webhook": 10_000.0}, segment_limit=3, routine_workers=1, emergency_workers=1,
                      clock=FixedClock(NOON), release_every_s=3600, park_s=600, circuit=circuit)


@pytest.mark.parametrize("circuit", [None, (1, 30.0)], ids=["retries-spent", "circuit-open"])
async def test_a_webhook_too_large_to_park_in_a_subscriber_outage_is_dead_lettered_and_the_sender_goes_on(
        circuit: tuple[int, float] | None) -> None:
    """Its subscriber down past the retries (or its circuit open), a webhook whose deferral would not fit the ledger
    topic is not parked: written, the broker refused it, the exception ended the routine sender task and so the run,
    and the record, never committed, came back after the restart: a crash loop for as long as the subscriber was
    down. Now it is dead-lettered (its body left out), done and counted; nothing is sent to be refused."""
    producer, tasks = FakeProducer(max_bytes={LEDGER: TOPIC_LIMIT}), Tasks()
    hook = too_large_webhook()
    d = _dispatcher(producer, FakeChannel(*[DeliveryError("http_503")] * 10), tasks, circuit)
    before = _too_large_count("webhook")
    d.start()
    try:
        if circuit is not None:  # one failure opens the subscriber's circuit: the large one is held
            await d.submit(hook.model_copy(update={"notification_id": "f" * 32, "payload": "{}"}), Calls())
            for _ in range(500):
                if d.circuits is not None and d.circuits.is_open(f"webhook:{hook.recipient.ref}"):
                    break
                await asyncio.sleep(0.005)
        done = Calls()
        await d.submit(hook, done)
        for _ in range(400):
            if done.count or tasks.failures():
                break
            await asyncio.sleep(0.005)
        assert tasks.failures() == [], f"a sender task died: {tasks.failures()!r}"
        assert done.count == 1
    finally:
        await d.stop()
    assert producer.refused == 0 and hook.notification_id in d.ledger.done
    [letter] = [m for m in producer.to(OUT.dlq) if m.json()["notification_id"] == hook.notification_id]
    assert letter.headers["dlq.reason"] == b"retries_exhausted:http_503" and letter.headers["dlq.omitted"] == b"payload"
    assert _too_large_count("webhook") > before


async def test_a_request_to_defer_whose_entry_would_not_fit_is_dead_lettered_with_its_reason() -> None:
    """A request that must wait (here a webhook due tomorrow) and cannot be kept in the ledger: dead-lettered with
    reason `deferral_too_large`, done, its input record released. `submit` raised the broker's refusal into the
    consumer loop, which ended the run, again after every restart."""
    producer, tasks = FakeProducer(max_bytes={LEDGER: TOPIC_LIMIT}), Tasks()
    channel = FakeChannel()
    d = _dispatcher(producer, channel, tasks, None)
    hook = too_large_webhook().model_copy(update={"not_before": NOON + timedelta(days=1)})
    done = Calls()
    await d.submit(hook, done)
    assert done.count == 1 and producer.refused == 0 and channel.attempted == []
    assert hook.notification_id in d.ledger.done and hook.notification_id not in d.ledger.deferred
    [letter] = producer.to(OUT.dlq)
    assert letter.headers["dlq.reason"] == DEFERRAL_TOO_LARGE.encode()
    [status] = [m.json() for m in producer.to(OUT.status)]
    assert (status["outcome"], status["reason"]) == ("dead_lettered", DEFERRAL_TOO_LARGE)


async def test_a_long_deferral_that_no_longer_fits_is_dead_lettered_instead_of_rewritten() -> None:
    """A deferral read back from the topic that no longer fits it (written under a larger limit) is due for its
    30-day rewrite: it is dead-lettered (`deferral_too_large`) and done; the rewrite raised out of the release task,
    which ended the run, and the restore brought it back."""
    clock, producer = FixedClock(NOON), FakeProducer(max_bytes={LEDGER: TOPIC_LIMIT})
    ledger = Ledger(LEDGER, producer, clock=clock)
    d = OwnedDispatcher({}, ledger, producer, Outputs(OUT.status, OUT.dlq), spawn=Tasks(), backoff=Backoff(),
                        quiet=QuietHours(), rates={}, segment_limit=2, routine_workers=1, emergency_workers=1,
                        clock=clock)
    hook = too_large_webhook().model_copy(update={"not_before": NOON + timedelta(days=50)})
    entry = Entry(state="deferred", request=deferrable(hook)).model_dump_json(exclude_none=True).encode()
    ledger.apply_record(0, hook.notification_id.encode(), entry, int(NOON.timestamp() * 1000))
    clock.now = NOON + timedelta(days=31)
    assert await d.refresh_deferrals() == 0
    assert producer.refused == 0 and hook.notification_id in ledger.done
    assert [m.headers["dlq.reason"] for m in producer.to(OUT.dlq)] == [DEFERRAL_TOO_LARGE.encode()]
