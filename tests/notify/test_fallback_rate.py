"""A Zalo request's SMS fallback is an SMS: it takes a token of SMS's rate bucket before the call (an emergency's
borrowed as SMS emergencies borrow), so the SMS gateway gets no more than `NOTIFY_RATE_PER_S` during a ZNS outage;
a Zalo message ZNS takes spends no SMS token. Real local providers (`FakeProviders`) behind the real channels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from schemas.notification import ChannelKind, NotificationRequest, Recipient
from services.common.stall import WorkerStalled
from services.notify.channels.http import HttpClient, SmsGateway, ZaloZns
from services.notify.delivery import Dispatcher
from services.notify.fake_providers import FakeProviders
from services.notify.ledger import Ledger
from services.notify.pacing import PacedFallback
from services.notify.policy import Backoff, TokenBucket
from tests.notify.fakes import Calls, FakeProducer, FixedClock, Tasks, running
from tests.notify.test_dispatcher import LEDGER, NEVER_QUIET, NOON, OUT, citizen_sms
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit


def zalo(event_id: str, zalo_user_id: str | None = None) -> NotificationRequest:
    """A routine Zalo request for a citizen with a phone (and a Zalo account if `zalo_user_id`)."""
    r = citizen_sms(event_id)
    recipient = Recipient(ref=r.recipient.ref, locale=r.recipient.locale, phone="0912000000",
                          zalo_user_id=zalo_user_id)
    return r.model_copy(update={"channel": ChannelKind.ZALO, "recipient": recipient})


async def zns_refuses(_: web.Request) -> web.Response:
    return web.json_response({"error": -124, "message": "user not found"})


@asynccontextmanager
async def dispatching(fake: FakeProviders, rates: dict[str, float], spawn: Tasks | None = None,
                      producer: FakeProducer | None = None) -> AsyncIterator[Dispatcher]:
    """A dispatcher whose SMS and Zalo channels call `fake` over HTTP, with circuits as the service has them."""
    http, producer = HttpClient(5), producer or FakeProducer()
    sms = SmsGateway(http, fake.url)
    d = Dispatcher({ChannelKind.SMS: sms, ChannelKind.ZALO: ZaloZns(http, fake.url, sms)}, Ledger(LEDGER, producer),
                   producer, OUT, spawn=spawn or Tasks(), backoff=Backoff(), quiet=NEVER_QUIET, rates=rates,
                   segment_limit=3, routine_workers=8, emergency_workers=1, clock=FixedClock(NOON), park_s=600,
                   circuit=(10, 30))
    async with running(d, http):
        yield d


async def test_zalo_fallbacks_and_sms_together_get_the_sms_gateway_no_more_than_its_rate() -> None:
    """ZNS refuses every Zalo request (no account): each falls back to SMS. With routine SMS queued beside them the
    gateway gets at most rate x elapsed + burst by any moment (before, a fallback took Zalo's token only: the
    gateway got its own rate plus the Zalo fallbacks', here about twice its contract)."""
    fake = FakeProviders()
    fake.zns = zns_refuses  # type: ignore[method-assign]
    await fake.start()
    rate, each = 20.0, 20
    burst = max(1.0, rate / 10)
    try:
        async with dispatching(fake, {"sms": rate, "zalo": rate}) as d:
            done = Calls()
            started = time.time()  # the clock of `FakeProviders.accepted`
            for i in range(each):
                await d.submit(citizen_sms(f"sms-{i}"), done)
                await d.submit(zalo(f"zalo-{i}"), done)
            await eventually_async(lambda: done.count == 2 * each, timeout=30, interval=0.01, what="all sent")
    finally:
        await fake.stop()
    arrivals = sorted(r.at for r in fake.accepted.values() if r.path == "/sms")
    assert len(arrivals) == 2 * each and not any(r.path == "/zns/send" for r in fake.accepted.values())
    # the n-th SMS may arrive once n - burst tokens have been refilled (+1: time.time against time.monotonic)
    over = [(n, round(at - started, 3)) for n, at in enumerate(arrivals, 1) if n > rate * (at - started) + burst + 1]
    assert not over, f"the gateway got more than {rate:g}/s: (n-th SMS, seconds) {over}"


async def test_a_zalo_message_zns_takes_spends_no_sms_token(fake: FakeProviders) -> None:
    """Nothing fell back: ZNS took every message, and SMS's bucket is as full as before (no second token taken
    beside Zalo's for a fallback that did not happen)."""
    async with dispatching(fake, {"sms": 1.0, "zalo": 10_000.0}) as d:
        done = Calls()
        for i in range(5):
            await d.submit(zalo(f"zns-{i}", zalo_user_id=f"z-{i}"), done)
        await eventually_async(lambda: done.count == 5, timeout=10, interval=0.01, what="all sent by ZNS")
        sms_bucket = d.routine.buckets[ChannelKind.SMS]
        assert sms_bucket.tokens == sms_bucket.burst and sms_bucket.updated == 0.0, "an SMS token was taken"
    assert {r.path for r in fake.accepted.values()} == {"/zns/send"}


async def test_an_emergency_fallback_borrows_an_sms_token_a_routine_one_waits_for() -> None:
    """SMS's bucket empty: an emergency's fallback takes a token at once, borrowed (as an SMS emergency would), while
    a routine fallback waits for the bucket to refill past the debt."""
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.wait_time(time.monotonic()) == 0  # the only token, taken by a routine SMS
    sms = {ChannelKind.SMS: bucket}
    urgent = asyncio.create_task(PacedFallback(sms, True, None, lambda: None).admit(ChannelKind.SMS))
    routine = asyncio.create_task(PacedFallback(sms, False, None, lambda: None).admit(ChannelKind.SMS))
    await asyncio.sleep(0)
    try:
        assert urgent.done() and urgent.result() is True and bucket.tokens < 0, "the emergency did not borrow"
        assert not routine.done(), "a routine fallback took a token the bucket did not have"
    finally:
        routine.cancel()
        await asyncio.gather(urgent, routine, return_exceptions=True)


class StallsAfterEntry:
    """A fence the call got through, whose stall check then fails: the worker stood still past the limit during the
    first provider's call (the group may have given its partition to another worker meanwhile)."""

    def __init__(self) -> None:
        self.checked = 0

    async def enter(self, source: object = None) -> None:
        return None

    def leave(self, source: object = None) -> None:
        return None

    def check(self, source: object = None) -> None:
        self.checked += 1
        raise WorkerStalled("event loop stood still for 9.0 s")


async def test_a_fallback_after_the_worker_stood_still_is_neither_called_nor_dead_lettered() -> None:
    """The fence's stall check (ADR 0012) came before the ZNS call only: a worker frozen past the limit during that
    call or its wait for SMS's token woke up, maybe evicted, and sent the SMS beside the partition's new owner. Now it
    is checked again before the fallback: no SMS, and the request neither recorded done nor dead-lettered (the sender
    ends with `WorkerStalled`, which ends the run; the next owner sends it)."""
    fake = FakeProviders()
    fake.zns = zns_refuses  # type: ignore[method-assign]
    await fake.start()
    tasks, producer, gate = Tasks(), FakeProducer(), StallsAfterEntry()
    try:
        async with dispatching(fake, {"sms": 1000.0, "zalo": 1000.0}, tasks, producer) as d:
            d.gate = gate
            await d.submit(zalo("frozen"), Calls())
            await eventually_async(lambda: bool(tasks.failures()), timeout=10, interval=0.01, what="the sender ended")
            assert [type(e) for e in tasks.failures()] == [WorkerStalled] and gate.checked == 1
    finally:
        await fake.stop()
    assert [r.path for r in fake.accepted.values()] == [], "the SMS was called"
    assert producer.sent == [], "recorded done, dead-lettered or given a status"
