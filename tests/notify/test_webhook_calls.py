"""`notify_webhook_calls_total{subscriber, outcome}`: each webhook call counted under its subscriber's registry name, as
WebhookSubscriberFailing needs (runbooks audit: one subscriber of two refusing every call was 49.6% of the channel)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from schemas.notification import ChannelKind, NotificationRequest, Recipient
from services.notify import metrics, rules
from services.notify.app import NotifyApp
from services.notify.channels.http import HttpClient, Webhooks
from services.notify.delivery import Dispatcher
from services.notify.fake_providers import FakeProviders
from services.notify.ledger import Ledger
from services.notify.policy import Backoff
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry, Subscriber
from tests.notify.events import PHONE, directory, dossier
from tests.notify.fakes import Calls, FakeChannel, FakeProducer, FixedClock, Tasks, running
from tests.notify.test_dispatcher import LEDGER, NEVER_QUIET, NOON, OUT, settle

pytestmark = pytest.mark.unit

NAME = "notify_webhook_calls_total"
NAME_PATTERN = Subscriber.model_fields["name"].metadata[0].pattern
OUTCOMES = ("sent", "refused", "failed")


def calls(subscriber: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(NAME, {"subscriber": subscriber, "outcome": outcome}) or 0.0


def counts(*subscribers: str) -> dict[tuple[str, str], float]:
    return {(s, o): calls(s, o) for s in subscribers for o in OUTCOMES}


def samples() -> Iterator[dict[str, str]]:
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == NAME:
                yield sample.labels


def registry(fake: FakeProviders) -> Registry:
    """prov-08 signs with a secret the subscriber does not hold (401 on every call, as in the audit); prov-09 is
    healthy. The fake provider checks prov-08's signature only."""
    return Registry.model_validate({"subscribers": [
        {"name": "prov-08", "url": f"{fake.url}/hooks/prov-08", "secret": "out-of-step"},
        {"name": "prov-09", "url": f"{fake.url}/hooks/prov-09", "secret": "s9"}]})


def webhooks(reg: Registry, count: int) -> list[NotificationRequest]:
    return [r for i in range(count) for r in rules.for_event(dossier(f"w-{i}", code=f"D-w-{i}"), directory(), reg)
            if r.channel is ChannelKind.WEBHOOK]


@asynccontextmanager
async def dispatcher(reg: Registry, producer: FakeProducer,
                     sms: FakeChannel | None = None) -> AsyncIterator[Dispatcher]:
    http = HttpClient(2)
    d = Dispatcher(
        {ChannelKind.WEBHOOK: Webhooks(http, reg), ChannelKind.SMS: sms or FakeChannel()}, Ledger(LEDGER, producer),
        producer, OUT, spawn=Tasks(), backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=40), quiet=NEVER_QUIET,
        rates={"webhook": 10_000.0, "sms": 10_000.0}, segment_limit=3, routine_workers=2, emergency_workers=1,
        clock=FixedClock(NOON))
    async with running(d, http):
        yield d


async def test_one_subscriber_refusing_every_call_is_counted_under_its_name_beside_a_healthy_one(
        fake: FakeProviders) -> None:
    """The audit's case in notify: prov-08 answers 401 to each of its calls (refused, dead-lettered at once), prov-09
    takes each of its own; the counter tells them apart, where the channel's figures were half failing."""
    reg, producer, done = registry(fake), FakeProducer(), Calls()
    before = counts("prov-08", "prov-09")
    requests = webhooks(reg, 3)
    async with dispatcher(reg, producer) as d:
        for r in requests:
            await d.submit(r, done)
        await settle(lambda: done.count == len(requests), "every webhook sent or dead-lettered")
    after = counts("prov-08", "prov-09")
    assert {k: after[k] - before[k] for k in after} == {
        ("prov-08", "sent"): 0, ("prov-08", "refused"): 3, ("prov-08", "failed"): 0,
        ("prov-09", "sent"): 3, ("prov-09", "refused"): 0, ("prov-09", "failed"): 0}
    assert fake.bad_signatures == 3 and len(producer.to(OUT.dlq)) == 3


async def test_a_subscriber_not_answering_is_counted_failed_per_call_then_sent(fake: FakeProviders) -> None:
    """An outage of the subscriber's endpoint (503, retried): each failed call counts `failed`, the call that gets
    through `sent`; nothing `refused`."""
    reg, producer, done = registry(fake), FakeProducer(), Calls()
    [hook] = [r for r in webhooks(reg, 1) if r.recipient.ref == "subscriber:prov-09"]
    before = counts("prov-09")
    fake.outage(0.2)
    async with dispatcher(reg, producer) as d:
        await d.submit(hook, done)
        await settle(lambda: done.count == 1, "the webhook sent")
    after = counts("prov-09")
    failed = after[("prov-09", "failed")] - before[("prov-09", "failed")]
    assert failed >= 1 and failed == fake.rejected_keys[hook.delivery_key]
    assert after[("prov-09", "sent")] - before[("prov-09", "sent")] == 1
    assert after[("prov-09", "refused")] == before[("prov-09", "refused")]


async def test_only_registry_names_label_the_counter_never_a_url_a_person_or_another_channel(
        fake: FakeProviders) -> None:
    """A webhook for a subscriber the registry no longer holds makes no call and is not counted (its name is no
    longer the registry's); an SMS is not a webhook call; every `subscriber` value is a registry-style name, never the
    URL called or anything of the applicant."""
    reg, producer, done, sms = registry(fake), FakeProducer(), Calls(), FakeChannel()
    [hook, *_] = webhooks(reg, 1)
    gone = hook.model_copy(update={"recipient": Recipient(ref="subscriber:gone"), "notification_id": "n-gone"})
    [text] = [r for r in rules.for_event(dossier("w-sms"), directory(), reg) if r.channel is ChannelKind.SMS]
    before = sum(calls(labels["subscriber"], labels["outcome"]) for labels in samples())
    async with dispatcher(reg, producer, sms) as d:
        await d.submit(gone, done)
        await d.submit(text, done)
        await settle(lambda: done.count == 2, "both done")
    assert sms.delivered == [text.notification_id]
    assert [letter.headers["dlq.reason"] for letter in producer.to(OUT.dlq)] == [b"unknown_subscriber"]
    assert sum(calls(labels["subscriber"], labels["outcome"]) for labels in samples()) == before
    assert all(calls("gone", o) == 0 for o in OUTCOMES)
    for labels in samples():
        assert set(labels) == {"subscriber", "outcome"} and labels["outcome"] in OUTCOMES
        name = labels["subscriber"]
        assert re.fullmatch(NAME_PATTERN, name), name  # no URL (`/`, `:`), no ref prefix
        assert PHONE not in name and "Trần" not in name and fake.url not in name


def test_every_registry_subscriber_is_exported_from_zero_at_start(tmp_path: Path) -> None:
    """notify exports each subscriber's three counters at 0 once it reads the registry, so the alert's increase()
    sees a quiet subscriber's first refusal (a series born at 1 shows no increase)."""
    path = tmp_path / "subscribers.toml"
    path.write_text('[[subscribers]]\nname = "prov-77"\nurl = "https://hooks.example.vn/prov-77"\nsecret = "s"\n',
                    encoding="utf-8")
    NotifyApp(NotifySettings(subscribers_file=path, deadlines=False), None)  # type: ignore[arg-type]
    for outcome in OUTCOMES:
        assert REGISTRY.get_sample_value(NAME, {"subscriber": "prov-77", "outcome": outcome}) == 0.0
    assert metrics.WEBHOOK_OUTCOMES == OUTCOMES
