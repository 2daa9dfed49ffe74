"""The fence per consumer (ADR 0012, amended 2026-12-04) under what an adversarial review of it found: released
parked emergencies waiting for the routine consumer, a fallback waiting for SMS's token across a revocation, and a
released emergency whose announcement record came again. Each test failed on the code the review read."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from functools import partial

import pytest
from aiohttp import web
from aiokafka import TopicPartition

from schemas.notification import ChannelKind
from services.common.health import Health
from services.common.stall import StallWatch
from services.notify.app import _consumer_of
from services.notify.fake_providers import FakeProviders
from services.notify.ledger import Ledger
from services.notify.policy import Backoff
from services.notify.rebalance import Fence, Readiness
from services.notify.release import OwnedDispatcher
from tests.notify.fakes import Calls, FakeChannel, FakeProducer, FixedClock, Tasks
from tests.notify.test_dispatcher import LEDGER, NEVER_QUIET, NOON, OUT, emergencies
from tests.notify.test_fallback_rate import dispatching, zalo, zns_refuses
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit

DOSSIER, ANNOUNCEMENT = "ns.commune.events.dossier", "ns.commune.events.announcement"


def _two() -> tuple[Readiness, Fence]:
    """Notify's two consumers, each assigned and caught up, and the fence the app builds (`app._consumer_of`)."""
    readiness = Readiness(Health("notify"), ("routine", "urgent"))
    readiness.assigned("routine")
    readiness.assigned("urgent")
    return readiness, Fence(readiness, StallWatch(60), partial(_consumer_of, {DOSSIER}, {ANNOUNCEMENT}))


async def test_released_parked_emergencies_leave_the_emergency_senders_free_while_routine_restores() -> None:
    """b9d6dc5's promise: a storm warning of the (settled) urgent consumer does not wait for the routine consumer's
    ledger restore. But a parked emergency released from ledger partition p is a job of dossier partition p
    (`source_of`), so it waits at the fence for the *routine* consumer, in the *emergency* lane. Released before the
    routine consumer's revocation (the release is stopped only from then on), `emergency_workers` of them take every
    emergency sender into the fence's wait, and the announcement's storm warning queues behind them for the whole
    restore (the audit's 1.5-2 min). Now such a job is tried again in a moment, its token given back, and the
    senders stay free."""
    producer = FakeProducer()
    ledger = Ledger(LEDGER, producer)
    channel = FakeChannel()
    readiness, fence = _two()
    d = OwnedDispatcher({ChannelKind.SMS: channel}, ledger, producer, OUT, spawn=Tasks(), backoff=Backoff(),
                        quiet=NEVER_QUIET, rates={"sms": 10_000.0}, segment_limit=3, routine_workers=1,
                        emergency_workers=2, clock=FixedClock(NOON), park_s=600, release_every_s=3600)
    ledger.commune_of = d.commune_of
    d.gate = fence
    # as the app sets them
    d.owns_partition = lambda p: readiness.settled_for("routine").is_set()
    d.source_of = lambda p: TopicPartition(DOSSIER, p)
    d.holds = lambda tp: True
    parked = emergencies("storm-earlier")[:2]  # an earlier storm warning's sends, parked through a gateway outage
    for request in parked:
        await ledger.record_deferred(request.model_copy(update={"not_before": NOON - timedelta(minutes=1)}))
    assert d.release_due() == 2  # released while the routine consumer was settled
    readiness.rebalancing("routine")  # then a rebalance: the routine consumer restores a long outage's ledger
    d.start()
    try:
        [warning, *_] = emergencies("storm-now")  # a new storm warning from the announcements (urgent: settled)
        done = Calls()
        await d.submit(warning, done, source=TopicPartition(ANNOUNCEMENT, 3))
        await asyncio.sleep(1.0)  # the routine consumer's restore lasts minutes; a second is plenty here
        assert warning.notification_id in channel.attempted, (
            "the settled urgent consumer's storm warning waited behind released parked emergencies held at the "
            "routine consumer's fence")
    finally:
        readiness.assigned("routine")
        await d.stop()


async def test_a_routine_fallback_waiting_for_an_sms_token_is_not_sent_once_its_consumer_is_revoked() -> None:
    """ea30acc: a routine Zalo message's SMS fallback waits, inside the fence, for a token of SMS's bucket, which
    emergencies may hold in debt for as long as a storm's sends last. 854e5af checks the stall watch again before the
    SMS, but not whether the job's consumer was revoked meanwhile: the revocation's drain waits `NOTIFY_DRAIN_S`
    (15 s, longer than aiokafka's rebalance timeout, the session timeout, 10 s), gives up, commits and lets the
    partition go; the next owner catches up (no ledger entry: nothing was sent), consumes the record again and sends
    ZNS + SMS; then this worker's token comes and its SMS goes too: the citizen gets two SMS.

    The SMS was not on the wire when the drain gave up (unlike the in-doubt call ADR 0012 accepts): it is now
    refused (`Gate.check(source)` raises `Revoked` while it waits and before the call) and the job goes back to the
    fence."""
    fake, zns_calls = FakeProviders(), []

    async def zns(request: web.Request) -> web.Response:
        zns_calls.append(time.time())
        return await zns_refuses(request)

    fake.zns = zns  # type: ignore[method-assign]
    await fake.start()
    readiness, fence = _two()
    try:
        async with dispatching(fake, {"sms": 0.5, "zalo": 1000.0}) as d:
            d.gate = fence
            sms_bucket = d.routine.buckets[ChannelKind.SMS]
            # a storm's SMS emergencies took the bucket and borrowed: a routine caller waits out the debt
            now = time.monotonic()
            assert sms_bucket.wait_time(now, urgent=True) == 0 and sms_bucket.wait_time(now, urgent=True) == 0
            source = TopicPartition(DOSSIER, 3)
            await d.submit(zalo("fallback-late"), Calls(), source=source)
            await eventually_async(lambda: bool(zns_calls), timeout=10,
                                   interval=0.01, what="ZNS refused it")
            readiness.rebalancing("routine")  # revoked: no new call from here on
            await fence.drained(0.2, "routine")  # the drain gives up (15 s in the service), the partition goes
            revoked_at = time.time()
            await asyncio.sleep(4.0)  # the SMS token comes (~2-4 s)
            late = [r for r in fake.accepted.values() if r.path == "/sms" and r.at >= revoked_at]
            assert not late, "an SMS fallback went out after its consumer's revocation had let the partition go"
    finally:
        readiness.assigned("routine")
        await fake.stop()


def _worker(channel: FakeChannel, holds: set[TopicPartition]) -> tuple[OwnedDispatcher, Ledger]:
    producer = FakeProducer()
    ledger = Ledger(LEDGER, producer)
    d = OwnedDispatcher({ChannelKind.SMS: channel}, ledger, producer, OUT, spawn=Tasks(), backoff=Backoff(),
                        quiet=NEVER_QUIET, rates={"sms": 10_000.0}, segment_limit=3, routine_workers=1,
                        emergency_workers=1, clock=FixedClock(NOON), park_s=600, release_every_s=3600)
    ledger.commune_of = d.commune_of
    d.source_of = lambda p: TopicPartition(DOSSIER, p)
    d.owns_partition = lambda p: TopicPartition(DOSSIER, p) in holds
    d.holds = lambda tp: tp in holds
    return d, ledger


async def test_a_released_emergency_whose_announcement_record_comes_again_is_sent_by_one_worker() -> None:
    """Worker A parked a storm warning E (announcement partition 3, ledger partition 3); E's announcement offset is
    not committed yet (an earlier record of the partition is still retrying). A releases E (a job of dossier 3). A
    rebalance: A keeps announcement 3, dossier 3 goes to worker B. A's urgent consumer consumes E's record again and
    `submit` attaches it to the released job still queued (`_inflight` is looked at before the ledger's deferred
    set, which would have answered "done"). `_settled_elsewhere` drops the release's claim (dossier 3 is B's) and
    keeps the announcement's: A sends E. B, now the releaser of ledger partition 3, finds E still deferred there
    (A's done entry not yet written) and sends it too. The deferral was B's to send alone.

    (Not introduced by the fence per consumer: the one fence behaved the same.) Now `submit` asks the ledger
    first: E is deferred there, so the record is done, and only the releaser sends E."""
    P = 0  # a ledger without layout has the one partition 0: read "partition 3" of the story as P
    [warning, *_] = emergencies("storm-parked-twice")
    parked = warning.model_copy(update={"not_before": NOON - timedelta(minutes=1)})
    sent_a, sent_b = FakeChannel(), FakeChannel()
    a_holds = {TopicPartition(DOSSIER, P), TopicPartition(ANNOUNCEMENT, P)}
    a, a_ledger = _worker(sent_a, a_holds)
    await a_ledger.record_deferred(parked)
    assert a.release_due() == 1  # A releases E: a job of dossier 3, queued
    # the rebalance: A keeps announcement 3, loses dossier 3 to B; A's urgent consumer reads E's record again
    a_holds.discard(TopicPartition(DOSSIER, P))
    await a.submit(warning, Calls(), source=TopicPartition(ANNOUNCEMENT, P))
    b, b_ledger = _worker(sent_b, {TopicPartition(DOSSIER, P)})
    await b_ledger.record_deferred(parked)  # B's catch-up of ledger partition 3: E deferred, due
    assert b.release_due() == 1
    a.start()
    b.start()
    try:
        await asyncio.sleep(0.5)
    finally:
        await a.stop()
        await b.stop()
    sends = sent_a.attempted.count(warning.notification_id) + sent_b.attempted.count(warning.notification_id)
    assert sends <= 1, f"E reached the provider {sends} times (A: {sent_a.attempted}, B: {sent_b.attempted})"
