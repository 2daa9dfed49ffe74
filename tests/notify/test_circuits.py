"""Circuit breakers (ADR 0032): a channel failing in a row holds its routine requests, one probe at a time, while the
other channels, emergencies and the input go on."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from schemas.notification import ChannelKind, NotificationRequest, Recipient
from services.notify import metrics
from services.notify.channels.base import DeliveryError, Message, Receipt
from services.notify.circuits import Circuits, Verdict, circuit_key
from services.notify.delivery import Dispatcher
from services.notify.ledger import Ledger
from services.notify.policy import Backoff
from tests.notify.fakes import Calls, FakeProducer, FixedClock, Tasks
from tests.notify.test_dispatcher import LEDGER, NEVER_QUIET, NOON, OUT, citizen_sms, emergencies, settle

pytestmark = pytest.mark.unit


def by(channel: ChannelKind, event_id: str, ref: str | None = None) -> NotificationRequest:
    """A routine request like `citizen_sms`, for `channel` (a webhook for subscriber `ref`)."""
    r = citizen_sms(event_id)
    update: dict[str, object] = {"channel": channel}
    if ref is not None:
        update["recipient"] = Recipient(ref=ref)
    return r.model_copy(update=update)


class Provider:
    """A channel that fails with a retryable 503 while `down`, and counts every call and every delivery by id."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.calls: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()

    async def send(self, message: Message) -> Receipt:
        nid = message.request.notification_id
        self.calls[nid] += 1
        if self.down:
            raise DeliveryError("http_503")
        self.delivered[nid] += 1
        return Receipt(f"m-{nid[:8]}")

    async def close(self) -> None: ...


# --- the circuit alone ------------------------------------------------------------------------------------------


def test_a_circuit_opens_after_failures_in_a_row_only() -> None:
    clock = FixedClock(NOON)
    circuits = Circuits(3, 30, clock)
    sms = citizen_sms("c-1")
    for ok in (False, False, True, False, False):  # an answer in between starts the count again
        circuits.settle(sms, circuits.verdict(sms), ok)
    assert circuits.verdict(sms) is Verdict.CALL and not circuits.is_open("sms")
    circuits.settle(sms, Verdict.CALL, False)
    assert circuits.is_open("sms") and circuits.verdict(sms) is Verdict.HOLD
    assert circuits.verdict(by(ChannelKind.EMAIL, "c-2")) is Verdict.CALL  # one channel's circuit, not all


def test_an_open_circuit_lets_one_probe_through_each_interval_and_never_holds_an_emergency() -> None:
    clock = FixedClock(NOON)
    circuits = Circuits(1, 30, clock)
    sms, [urgent, *_] = citizen_sms("p-1"), emergencies("p-storm")
    circuits.settle(sms, Verdict.CALL, False)
    assert circuits.verdict(urgent) is Verdict.CALL and circuits.verdict(sms) is Verdict.HOLD
    clock.now += timedelta(seconds=31)
    assert circuits.verdict(sms) is Verdict.PROBE
    assert circuits.verdict(sms) is Verdict.HOLD  # the probe is out: nobody else
    circuits.settle(sms, Verdict.PROBE, None)  # no answer (a bug, a cancellation): the probe is given back
    assert circuits.verdict(sms) is Verdict.PROBE
    circuits.settle(sms, Verdict.PROBE, False)  # failed: another 30 s
    assert circuits.verdict(sms) is Verdict.HOLD
    clock.now += timedelta(seconds=29)
    assert circuits.verdict(sms) is Verdict.HOLD
    clock.now += timedelta(seconds=2)
    assert circuits.verdict(sms) is Verdict.PROBE
    circuits.settle(sms, Verdict.PROBE, True)
    assert not circuits.is_open("sms") and circuits.verdict(sms) is Verdict.CALL


def test_an_emergency_sent_closes_the_circuit() -> None:
    circuits = Circuits(1, 30, FixedClock(NOON))
    sms, [urgent, *_] = citizen_sms("e-1"), emergencies("e-storm")
    circuits.settle(sms, Verdict.CALL, False)
    circuits.settle(urgent, circuits.verdict(urgent), True)
    assert circuits.verdict(sms) is Verdict.CALL


def test_each_webhook_subscriber_has_a_circuit_of_its_own() -> None:
    circuits = Circuits(1, 30, FixedClock(NOON))
    a, b = by(ChannelKind.WEBHOOK, "w-1", "subscriber:a"), by(ChannelKind.WEBHOOK, "w-2", "subscriber:b")
    assert circuit_key(a) == "webhook:subscriber:a"
    circuits.settle(a, Verdict.CALL, False)
    assert circuits.verdict(a) is Verdict.HOLD and circuits.verdict(b) is Verdict.CALL


def test_a_held_request_waits_as_long_as_the_outage_has_lasted_within_bounds() -> None:
    clock = FixedClock(NOON)
    circuits = Circuits(1, 30, clock)
    sms, longest = citizen_sms("h-1"), timedelta(seconds=600)
    circuits.settle(sms, Verdict.CALL, False)
    assert circuits.hold_for(sms, longest) == timedelta(seconds=30)  # a blip's requests wait one interval
    clock.now += timedelta(seconds=31)
    circuits.settle(sms, circuits.verdict(sms), False)  # a failed probe: the outage goes on from its start
    clock.now += timedelta(seconds=100)
    assert circuits.hold_for(sms, longest) == timedelta(seconds=131)
    clock.now += timedelta(hours=3)
    assert circuits.hold_for(sms, longest) == longest


def test_the_gauge_counts_open_circuits_and_forgets_them_at_stop() -> None:
    gauge = metrics.CIRCUITS_OPEN.labels("webhook")
    before = gauge._value.get()
    circuits = Circuits(1, 30, FixedClock(NOON))
    a, b = by(ChannelKind.WEBHOOK, "g-1", "subscriber:a"), by(ChannelKind.WEBHOOK, "g-2", "subscriber:b")
    with capture_logs() as logs:
        circuits.settle(a, Verdict.CALL, False)
        circuits.settle(b, Verdict.CALL, False)
        circuits.settle(b, Verdict.CALL, False)  # already open: counted once
        assert gauge._value.get() == before + 2
        circuits.settle(a, Verdict.CALL, True)
        assert gauge._value.get() == before + 1
    assert [e["event"] for e in logs] == ["notify.circuit_opened", "notify.circuit_opened", "notify.circuit_closed"]
    circuits.forget()
    assert gauge._value.get() == before


# --- in the dispatcher --------------------------------------------------------------------------------------------


def dispatcher(sms: Provider, email: Provider, clock: FixedClock, circuit: tuple[int, float] | None,
               producer: FakeProducer) -> Dispatcher:
    return Dispatcher(
        {ChannelKind.SMS: sms, ChannelKind.EMAIL: email}, Ledger(LEDGER, producer), producer, OUT, spawn=Tasks(),
        backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=40), quiet=NEVER_QUIET,
        rates={"sms": 10_000.0, "email": 10_000.0}, segment_limit=3, routine_workers=4, emergency_workers=1,
        clock=clock, release_every_s=0.01, park_s=600, circuit=circuit)


async def outage(circuit: tuple[int, float] | None) -> tuple[Dispatcher, Provider, Provider, list[str], list[str],
                                                              Calls]:
    """The SMS gateway down for good, e-mail working: 5 SMS, then 20 SMS and 20 e-mails submitted."""
    sms, email, clock, producer = Provider(down=True), Provider(), FixedClock(NOON), FakeProducer()
    d = dispatcher(sms, email, clock, circuit, producer)
    d.start()
    done = Calls()
    first = [citizen_sms(f"first-{i}") for i in range(5)]
    for r in first:
        await d.submit(r, done)
    await settle(lambda: sum(sms.calls.values()) >= 3, "the first SMS tried")
    texts = [citizen_sms(f"sms-{i}") for i in range(20)]
    mails = [by(ChannelKind.EMAIL, f"mail-{i}") for i in range(20)]
    for r in [x for pair in zip(texts, mails, strict=True) for x in pair]:
        await d.submit(r, done)
    await settle(lambda: len(email.delivered) == 20, "every e-mail sent")
    return d, sms, email, [r.notification_id for r in first + texts], [r.notification_id for r in mails], done


async def test_an_open_circuit_parks_the_channels_routine_requests_without_a_call_and_the_rest_goes_on() -> None:
    """The SMS gateway down: after 3 failures in a row its routine requests are parked (reason `circuit_open`, a
    done input record each) without a call, so the lane holds none of them; e-mails are sent meanwhile. Without a
    circuit the same outage keeps every SMS in memory for its whole budget (40 attempts), holding the lane."""
    with capture_logs() as logs:
        d, sms, _, texts, _, done = await outage((3, 30))
        try:
            await settle(lambda: done.count == 45 and d.routine_backlog == 0, "every SMS parked, the lane empty")
            assert sum(sms.calls.values()) <= 5 + 4  # the failures that opened it, and calls already under way
            assert all(nid in d.ledger.deferred for nid in texts)
            parked = [e for e in logs if e["event"] == "notify.parked"]
            assert {e["reason"] for e in parked} == {"circuit_open"}
            assert {d.ledger.deferred[n].not_before for n in texts} == {NOON + timedelta(seconds=30)}
        finally:
            await d.stop()
    d, sms, _, texts, _, done = await outage(None)  # the control: the same outage, no circuit
    try:
        await settle(lambda: sum(sms.calls.values()) >= 100, "the SMS retried")
        assert done.count == 20 and d.routine_backlog == 25 and not d.ledger.deferred
    finally:
        await d.stop()


async def test_after_the_outage_one_probe_closes_the_circuit_and_every_parked_request_is_sent_once() -> None:
    d, sms, _, texts, _, done = await outage((3, 30))
    clock = d.clock
    assert isinstance(clock, FixedClock)
    try:
        await settle(lambda: done.count == 45 and d.routine_backlog == 0, "every SMS parked")
        [urgent, *_] = emergencies("while-open")
        await d.submit(urgent, Calls())  # an emergency is still tried, on its own back-off, until its budget is spent
        await settle(lambda: urgent.notification_id in d.ledger.deferred, "the emergency tried 40 times, parked")
        assert sms.calls[urgent.notification_id] == 40
        assert d.circuits is not None and d.circuits.is_open("sms")
        calls = sum(sms.calls.values())
        clock.now += timedelta(seconds=31)  # due; the first released is the probe, and fails
        await settle(lambda: sum(sms.calls.values()) > calls, "probed")
        await settle(lambda: all(d.ledger.deferred[n].not_before > clock.now for n in texts), "held again")
        assert sum(sms.calls.values()) - calls == 1  # one probe
        sms.down = False
        clock.now += timedelta(seconds=61)
        await settle(lambda: all(n in d.ledger.done for n in texts), "every SMS sent")
        assert [sms.delivered[n] for n in texts] == [1] * 25
        assert not d.circuits.is_open("sms")
        clock.now += timedelta(seconds=600)
        await settle(lambda: urgent.notification_id in d.ledger.done, "the emergency sent after its park")
        assert sms.delivered[urgent.notification_id] == 1
    finally:
        await d.stop()
