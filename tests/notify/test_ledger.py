"""The delivery ledger's pure logic with a recording producer: what it applies, what it writes, what it reads back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest

from schemas.notification import ChannelKind, NotificationRequest
from services.notify import release, rules
from services.notify.jobs import Outputs
from services.notify.ledger import REWRITE_DEFERRED_AFTER, Entry, Ledger
from services.notify.personal import redact
from services.notify.policy import Backoff, QuietHours
from services.notify.release import OwnedDispatcher
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier, storm, visit_scheduled
from tests.notify.fakes import FakeChannel, FakeProducer, FixedClock, Tasks
from tests.waiting import eventually_async

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

    async def enter(self, source: object = None) -> None:
        self.entered += 1

    def leave(self, source: object = None) -> None:
        self.left += 1

    def check(self, source: object = None) -> None:
        pass


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
        async def enter(self, source: object = None) -> None:  # the second record waits out a rebalance that
            await super().enter(source)  # takes the partition
            if self.entered == 2:
                owned[0] = False

    dispatcher.gate = gate = RebalancingGate()
    before = len(producer.to(TOPIC))
    assert await dispatcher.refresh_deferrals() == 1
    assert len(producer.to(TOPIC)) == before + 1 and gate.entered == gate.left


class HeldAcks(FakeProducer):
    """A broker slow to acknowledge: every write of a key in `held` waits for `acks`."""

    def __init__(self, held: set[bytes]) -> None:
        super().__init__()
        self.held, self.acks, self.waiting = held, asyncio.Event(), 0

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                            headers: object = None) -> object:  # type: ignore[override]
        if key in self.held:
            self.waiting += 1
            await self.acks.wait()
        return await super().send_and_wait(topic, value, key)


async def test_a_due_emergency_is_released_while_long_deferrals_are_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hourly rewrite of 30 visit reminders deferred 31 days ago waits on the broker's acknowledgements; a parked
    storm warning due meanwhile is released and sent at once, and the rewrite then ends (audit: the release loop
    awaited the rewrite, one acknowledged write per deferral, and no tick ran until its end)."""
    monkeypatch.setattr(release, "REFRESH_EVERY_S", 0.01)
    now = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
    clock = FixedClock(now - timedelta(days=31))
    reminders = [f"reminder-{i:02d}" for i in range(30)]
    producer = HeldAcks({nid.encode() for nid in reminders})
    ledger, channel, tasks = Ledger(TOPIC, producer, clock=clock), FakeChannel(), Tasks()
    d = OwnedDispatcher({ChannelKind.SMS: channel}, ledger, producer, Outputs("t.status", "t.dlq"), spawn=tasks,
                        backoff=Backoff(), quiet=QuietHours(time(0), time(0)), rates={"sms": 10_000.0},
                        segment_limit=3, routine_workers=1, emergency_workers=1, clock=clock, release_every_s=0.01,
                        release_limit=100, park_s=600)
    ledger.commune_of = d.commune_of
    for nid in reminders:  # written 31 days ago, due in 20 days
        ledger.apply(nid, Entry(state="deferred", request=request(nid).model_copy(
            update={"notification_id": nid, "not_before": now + timedelta(days=20)})))
    urgent = rules.for_event(storm("storm-due"), directory(), Registry())[0]
    clock.now = now
    ledger.apply(urgent.notification_id, Entry(state="deferred", request=urgent.model_copy(
        update={"not_before": now + timedelta(seconds=1)})))
    d.start()
    try:
        await eventually_async(lambda: producer.waiting == 1, timeout=2, what="the first rewrite waiting for its ack")
        clock.now += timedelta(seconds=2)  # the parked storm warning is due
        await eventually_async(lambda: urgent.notification_id in channel.delivered, timeout=2, interval=0.01,
                               what="the due storm warning released and sent while the rewrite waits")
        producer.acks.set()
        await eventually_async(lambda: {s.key for s in producer.to(TOPIC)} >= producer.held, timeout=2,
                               what="every long deferral written again")
        assert "deferral-refresh" in [name for name, _ in tasks.started] and tasks.failures() == []  # supervised
    finally:
        await d.stop()


async def test_a_deferral_is_not_released_while_its_copy_is_being_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long deferral due while its rewrite waits for the broker's ack is passed over until the copy is written: a
    send of it released meanwhile could write its done entry before the copy, which compaction would then keep (it
    would come back due after a restore)."""
    monkeypatch.setattr(release, "REFRESH_EVERY_S", 0.01)
    now = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
    clock = FixedClock(now - timedelta(days=31))
    producer = HeldAcks({b"reminder"})
    ledger, channel = Ledger(TOPIC, producer, clock=clock), FakeChannel()
    d = OwnedDispatcher({ChannelKind.SMS: channel}, ledger, producer, Outputs("t.status", "t.dlq"), spawn=Tasks(),
                        backoff=Backoff(), quiet=QuietHours(time(0), time(0)), rates={"sms": 10_000.0},
                        segment_limit=3, routine_workers=1, emergency_workers=1, clock=clock,
                        release_every_s=3600, park_s=600)
    ledger.commune_of = d.commune_of
    ledger.apply("reminder", Entry(state="deferred", request=request("reminder").model_copy(
        update={"notification_id": "reminder", "not_before": now + timedelta(seconds=1)})))
    clock.now = now
    d.start()
    try:
        await eventually_async(lambda: producer.waiting == 1, timeout=2, what="the rewrite waiting for its ack")
        clock.now += timedelta(seconds=2)  # due
        assert d.release_due() == 0
        producer.acks.set()
        await eventually_async(lambda: d._rewriting is None, timeout=2, what="the copy written")
        assert d.release_due() == 1
        await eventually_async(lambda: channel.delivered == ["reminder"], timeout=2, what="then sent")
    finally:
        await d.stop()


MALFORMED = {
    "no_value": (b"n-tomb", None), "no_key": (None, b'{"state":"done"}'), "key_not_utf8": (b"\xff\xfe", b"{}"),
    "not_json": (b"n-text", b"0912345678 not json"), "a list": (b"n-list", b'[{"state":"done"}]'),
    "a number": (b"n-num", b"42"), "an unknown state": (b"n-state", b'{"state":"sent","outcome":"0912345678"}'),
    "a deferral without request": (b"n-empty", b'{"state":"deferred"}'),
    "a request that is none": (b"n-bad", b'{"state":"deferred","request":{"notification_id":"0912345678"}}'),
    "another id's request": (b"n-other", Entry(state="deferred", request=request("x")).model_dump_json().encode()),
}


@pytest.mark.parametrize("key, value", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_ledger_record_that_is_no_entry_is_skipped_counted_and_logged_without_its_content(
        key: bytes | None, value: bytes | None) -> None:
    """Read back (restore or tail), a record that is no entry changes nothing and is counted
    (`notify_records_skipped_total{reason="ledger_invalid"}`), its log line naming the partition and a reason code
    only; the entries around it apply. `orjson.loads` and `Entry.model_validate` raised out of the tail, which ended
    the run, and every restore after it read the record again: notify stopped for good."""
    from structlog.testing import capture_logs

    from services.notify import ledger as ledger_module
    from services.notify import metrics

    ledger_module.SKIPPED_LOGGED.clear()
    before = metrics.SKIPPED.labels("ledger_invalid")._value.get()
    ledger = Ledger(TOPIC, FakeProducer())
    deferred = request("around").model_copy(update={"not_before": dossier().time})
    with capture_logs() as logs:
        ledger.apply_records(0, [(b"n-before", b'{"state":"done","outcome":"sent"}', 0), (key, value, 0),
                                 (deferred.notification_id.encode(), Entry(state="deferred", request=deferred)
                                  .model_dump_json().encode(), 0)])
    assert ledger.done == {"n-before"} and set(ledger.deferred) == {deferred.notification_id}
    assert metrics.SKIPPED.labels("ledger_invalid")._value.get() == before + 1
    [line] = [e for e in logs if e["event"] == "notify.ledger_entry_skipped"]
    assert line["partition"] == 0 and line["skipped_since_last"] == 1
    assert "0912345678" not in str(logs) and "n-" not in str(logs)
