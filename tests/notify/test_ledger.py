"""The delivery ledger's pure logic with a recording producer: what it applies, what it writes, what it reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.notification import NotificationRequest
from services.notify import rules
from services.notify.jobs import Outputs
from services.notify.ledger import REWRITE_DEFERRED_AFTER, Entry, Ledger
from services.notify.personal import redact
from services.notify.policy import Backoff, QuietHours
from services.notify.release import OwnedDispatcher
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier, storm, visit_scheduled
from tests.notify.fakes import FakeProducer, FixedClock, Tasks

pytestmark = pytest.mark.unit
TOPIC = "t.ledger"


def request(event_id: str) -> NotificationRequest:
    return rules.for_event(dossier(event_id), directory(), Registry())[0]


def replay(producer: FakeProducer) -> Ledger:
    """A fresh ledger that read back everything `producer` wrote (a restart's restore)."""
    fresh = Ledger(TOPIC, FakeProducer())
    for sent in producer.to(TOPIC):
        fresh.apply_record(0, sent.key, sent.value, 0)
    return fresh


async def test_recording_done_applies_at_once_and_writes_the_entry_keyed_by_id() -> None:
    """`record_done` marks the id done before the send and writes {state: done, outcome} under the id."""
    producer = FakeProducer()
    ledger = Ledger(TOPIC, producer)
    await ledger.record_done("n-1", "sent")
    assert ledger.done == {"n-1"}
    [sent] = producer.sent
    assert (sent.topic, sent.key, sent.json()) == (TOPIC, b"n-1", {"state": "done", "outcome": "sent"})


async def test_a_deferral_survives_a_restart_with_its_request() -> None:
    """A deferred request read back from the topic is the same request, due at the same time; a directory contact's
    clear phone is not written (looked up again at delivery)."""
    producer = FakeProducer()
    [operator] = [r for r in rules.for_event(storm("s-1"), directory(), Registry()) if r.recipient.ref.startswith(
        "operator:")]
    deferred = operator.model_copy(update={"not_before": dossier().time})
    await Ledger(TOPIC, producer).record_deferred(deferred)
    restored = replay(producer)
    assert restored.deferred == {deferred.notification_id: redact(deferred)} and not restored.done
    written = producer.to(TOPIC)[0].value or b""
    assert deferred.recipient.phone and deferred.recipient.phone.encode() not in written


async def test_an_applicant_contact_that_came_in_clear_is_kept_by_a_deferral() -> None:
    """An applicant's contact carried in clear (a deployment that seals nothing) is written with the deferral: it
    could not be found again, and the request would be dead-lettered `no_phone` at its release (it was)."""
    producer = FakeProducer()
    deferred = request("d-1").model_copy(update={"not_before": dossier().time})
    assert deferred.recipient.ref == "applicant" and deferred.recipient.phone and not deferred.recipient.sealed
    await Ledger(TOPIC, producer).record_deferred(deferred)
    assert replay(producer).deferred == {deferred.notification_id: deferred}


async def test_done_after_deferred_releases_it_for_good() -> None:
    """A deferral followed by its send leaves the id done and no longer deferred, also after a restart."""
    producer = FakeProducer()
    ledger = Ledger(TOPIC, producer)
    deferred = request("d-2")
    await ledger.record_deferred(deferred)
    await ledger.record_done(deferred.notification_id, "sent")
    for state in (ledger, replay(producer)):
        assert state.done == {deferred.notification_id} and state.deferred == {}


def test_done_is_final_even_if_a_late_deferral_is_read_after_it() -> None:
    """A deferral of an id already done (a worker whose ledger lagged) does not bring it back."""
    ledger = Ledger(TOPIC, FakeProducer())
    late = request("d-3")
    ledger.apply(late.notification_id, Entry(state="done", outcome="sent"))
    ledger.apply(late.notification_id, Entry(state="deferred", request=late))
    assert ledger.deferred == {} and ledger.done == {late.notification_id}


def test_tombstones_and_keyless_records_change_nothing() -> None:
    """Compaction tombstones (no value) and records without a key are skipped."""
    ledger = Ledger(TOPIC, FakeProducer())
    ledger.apply_record(0, b"n-1", None, 0)
    ledger.apply_record(0, None, b'{"state":"done","outcome":"sent"}', 0)
    assert ledger.done == set() and ledger.deferred == {}


async def test_a_long_deferral_is_written_again_before_the_topic_deletes_it() -> None:
    """A visit's day-before message deferred 88 days: the ledger topic deletes records after 60 days and a restore
    starts from the topic, so a deferral last written over half that ago is written again (same request, same due
    time, a fresh record); a recent one, a done id and one in flight are left alone. It was written once: a restart
    after day 60 forgot it, and the village was never told."""
    now = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
    clock, producer = FixedClock(now), FakeProducer()
    ledger = Ledger(TOPIC, producer, clock=clock)
    [visit] = rules.for_event(visit_scheduled("far-1", when=now + timedelta(days=90)), directory(), Registry())
    old, recent, gone, busy = visit, request("r-1"), request("r-2"), request("r-3")
    for deferred in (old, gone, busy):
        await ledger.record_deferred(deferred)
    await ledger.record_done(gone.notification_id, "sent")
    clock.now = now + REWRITE_DEFERRED_AFTER + timedelta(minutes=1)
    await ledger.record_deferred(recent)
    before = len(producer.to(TOPIC))
    assert await ledger.refresh_deferrals(REWRITE_DEFERRED_AFTER, owned=lambda p: True,
                                          skip={busy.notification_id}) == 1
    [rewritten] = producer.to(TOPIC)[before:]
    assert rewritten.key == old.notification_id.encode()
    assert NotificationRequest.model_validate(rewritten.json()["request"]) == redact(old)
    assert await ledger.refresh_deferrals(REWRITE_DEFERRED_AFTER, owned=lambda p: True,
                                          skip={busy.notification_id}) == 0
    assert await ledger.refresh_deferrals(REWRITE_DEFERRED_AFTER, owned=lambda p: p != 0) == 0  # not ours
    assert timedelta(days=30) >= REWRITE_DEFERRED_AFTER and ledger.deferred[old.notification_id].not_before == (
        old.not_before)


class CountingGate:
    def __init__(self) -> None:
        self.entered = self.left = 0

    async def enter(self) -> None:
        self.entered += 1

    def leave(self) -> None:
        self.left += 1


def upkeep(now: datetime) -> tuple[FixedClock, FakeProducer, Ledger, OwnedDispatcher]:
    """A clock at `now`, a producer, a ledger and the dispatcher that keeps its deferrals (no providers)."""
    clock, producer = FixedClock(now), FakeProducer()
    ledger = Ledger(TOPIC, producer, clock=clock)
    dispatcher = OwnedDispatcher({}, ledger, producer, Outputs("t.status", "t.dlq"), spawn=Tasks(), backoff=Backoff(),
                                 quiet=QuietHours(), rates={}, segment_limit=2, routine_workers=1, emergency_workers=1,
                                 clock=clock)
    return clock, producer, ledger, dispatcher


async def test_the_releasing_owner_rewrites_long_deferrals_inside_the_fence() -> None:
    """The dispatcher's upkeep rewrites its owned partitions' long deferrals after passing the fence (a copy written
    by a worker that lost the partition could outlive the new owner's done entry in compaction)."""
    now = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
    clock, _, ledger, dispatcher = upkeep(now)
    dispatcher.gate = gate = CountingGate()
    [visit] = rules.for_event(visit_scheduled("far-2", when=now + timedelta(days=90)), directory(), Registry())
    await ledger.record_deferred(visit)
    clock.now = now + timedelta(days=31)
    dispatcher.owns_partition = lambda p: False
    assert await dispatcher.refresh_deferrals() == 0
    dispatcher.owns_partition = lambda p: True
    assert await dispatcher.refresh_deferrals() == 1 and (gate.entered, gate.left) == (1, 1)


async def test_a_worker_that_loses_the_partition_mid_rewrite_writes_no_more_copies() -> None:
    """Each rewrite passes the fence on its own and checks the partition is still owned: once a rebalance takes it
    away, not one more copy is written (one pass over many deferrals used to check ownership once, up front, and
    went on writing after the fence had handed the partition over)."""
    now = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
    clock, producer, ledger, dispatcher = upkeep(now)
    for i in range(5):
        [visit] = rules.for_event(visit_scheduled(f"far-{i}", when=now + timedelta(days=90)), directory(), Registry())
        await ledger.record_deferred(visit)
    clock.now = now + timedelta(days=31)
    owned = [True]
    dispatcher.owns_partition = lambda p: owned[0]

    class RebalancingGate(CountingGate):
        async def enter(self) -> None:  # the second record waits out a rebalance that takes the partition
            await super().enter()
            if self.entered == 2:
                owned[0] = False

    dispatcher.gate = gate = RebalancingGate()
    before = len(producer.to(TOPIC))
    assert await dispatcher.refresh_deferrals() == 1
    assert len(producer.to(TOPIC)) == before + 1 and gate.entered == gate.left
