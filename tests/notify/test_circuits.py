"""Circuit breakers (ADR 0032): a channel failing in a row holds its routine requests, one probe at a time, while the
other channels, emergencies and the input go on."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from structlog.testing import capture_logs

from schemas.notification import ChannelKind, NotificationRequest, Recipient
from services.notify import jobs, metrics
from services.notify.channels.base import DeliveryError, FellBack, Message, Receipt
from services.notify.channels.http import IDEMPOTENCY_HEADER, SmsGateway, ZaloZns
from services.notify.circuits import Circuits, FallbackCircuit, Verdict, circuit_key
from services.notify.delivery import Dispatcher
from services.notify.ledger import Ledger
from services.notify.personal import OpenContacts, as_is
from services.notify.policy import Backoff
from tests.notify.fakes import Calls, FakeChannel, FakeProducer, FixedClock, Tasks
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
    """A channel that fails with a retryable 503 while `down`, and counts every call and every delivery by id; it
    answers after `delay_s` (a real one takes some time)."""

    def __init__(self, down: bool = False, delay_s: float = 0.0) -> None:
        self.down, self.delay_s = down, delay_s
        self.calls: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()

    async def send(self, message: Message) -> Receipt:
        nid = message.request.notification_id
        self.calls[nid] += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
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
    assert circuits.verdict(sms) is Verdict.WAIT  # the probe is out: nobody else, the others wait for its outcome
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


def test_a_fallback_asks_its_own_providers_circuit_as_a_request_of_that_channel_would() -> None:
    """A Zalo request's SMS fallback, SMS's circuit open: held for the hold (or called if it may not wait that long,
    or an emergency); past the interval it is the one probe, the others beside it wait; its outcome settles SMS's."""
    clock, park = FixedClock(NOON), timedelta(seconds=600)
    circuits = Circuits(1, 30, clock)
    circuits.settle(citizen_sms("f-0"), Verdict.CALL, False)
    zalo = by(ChannelKind.ZALO, "f-1")
    held = FallbackCircuit(circuits, zalo, park, lambda wait: True)
    assert not held.admit(ChannelKind.SMS) and held.held_for == timedelta(seconds=30)
    assert circuits.verdict(zalo) is Verdict.CALL  # Zalo's own circuit is not SMS's
    late = FallbackCircuit(circuits, zalo, park, lambda wait: False)
    assert late.admit(ChannelKind.SMS) and late.verdict is Verdict.HOLD  # may not wait: called
    [urgent, *_] = emergencies("f-storm")
    assert FallbackCircuit(circuits, urgent.model_copy(update={"channel": ChannelKind.ZALO}), park,
                           lambda wait: True).admit(ChannelKind.SMS)
    clock.now += timedelta(seconds=31)
    probe, beside = (FallbackCircuit(circuits, zalo, park, lambda wait: True) for _ in range(2))
    assert probe.admit(ChannelKind.SMS) and probe.verdict is Verdict.PROBE
    assert not beside.admit(ChannelKind.SMS) and beside.held and beside.held_for is None  # waits for its outcome
    circuits.settle(zalo, Verdict.CALL, True, FellBack(answered=True, to=ChannelKind.SMS), probe)
    assert not circuits.is_open("sms")


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
        clock=clock, release_every_s=0.01, park_s=600, circuit=circuit, emergency_park_s=30)


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
    """The SMS gateway down, its circuit open, 25 SMS held and an emergency parked once its budget was spent: each
    probe interval one routine probe, and the emergency (never held, parked for a probe interval) tried again; once
    the gateway is back, every one is sent once, the storm warning with the routine SMS (audit: it was parked for the
    whole `park_s`, and went out 10 minutes after them)."""
    d, sms, _, texts, _, done = await outage((3, 30))
    clock = d.clock
    assert isinstance(clock, FixedClock)
    try:
        await settle(lambda: done.count == 45 and d.routine_backlog == 0, "every SMS parked")
        [urgent, *_] = emergencies("while-open")
        await d.submit(urgent, Calls())  # an emergency is still tried, on its own back-off, until its budget is spent
        await settle(lambda: urgent.notification_id in d.ledger.deferred, "the emergency tried 40 times, parked")
        assert sms.calls[urgent.notification_id] == 40
        assert d.ledger.deferred[urgent.notification_id].not_before == clock.now + timedelta(seconds=30)
        assert d.circuits is not None and d.circuits.is_open("sms")
        calls = sum(sms.calls[n] for n in texts)
        clock.now += timedelta(seconds=31)  # due; the first routine request released is the probe, and fails
        await settle(lambda: sum(sms.calls[n] for n in texts) > calls, "probed")
        await settle(lambda: all(d.ledger.deferred[n].not_before > clock.now for n in texts), "held again")
        await settle(lambda: d.ledger.deferred[urgent.notification_id].not_before > clock.now, "the emergency tried "
                     "again (a fresh budget: the plain dispatcher's release), parked again")
        assert sms.calls[urgent.notification_id] == 80
        assert sum(sms.calls[n] for n in texts) - calls == 1  # one probe
        sms.down = False
        clock.now += timedelta(seconds=61)
        await settle(lambda: all(n in d.ledger.done for n in [*texts, urgent.notification_id]), "every one sent")
        assert [sms.delivered[n] for n in [*texts, urgent.notification_id]] == [1] * 26
        assert not d.circuits.is_open("sms")
    finally:
        await d.stop()


# --- the review's cases: real SMS and Zalo channels over a fake HTTP client -------------------------------------


class Gateway:
    """The HTTP client of SmsGateway and ZaloZns: the SMS gateway down (503) while `sms_down`; ZNS takes a message
    for a user with a Zalo id and refuses (error -124, for good) the others. Every call is counted by path and by
    Idempotency-Key (`keys`), every SMS taken by key (`sms_taken`); an SMS call waits for `sms_gate` if set."""

    def __init__(self) -> None:
        self.sms_down = True
        self.sms_gate: asyncio.Event | None = None
        self.calls: Counter[str] = Counter()
        self.keys: Counter[tuple[str, str]] = Counter()
        self.sms_taken: Counter[str] = Counter()

    async def post(self, url: str, *, json: object = None, data: bytes | None = None,
                   headers: dict[str, str], read_reply: bool = True) -> dict[str, object] | str:
        assert isinstance(json, dict)
        key = headers[IDEMPOTENCY_HEADER]
        if url.endswith("/sms"):
            self.calls["sms"] += 1
            self.keys["sms", key] += 1
            if self.sms_gate is not None:
                await self.sms_gate.wait()
            if self.sms_down:
                raise DeliveryError("http_503")
            self.sms_taken[key] += 1
            return {"message_id": "m-1"}
        self.keys["zns", key] += 1
        self.calls["zns"] += 1
        return {"error": 0, "data": {"msg_id": "z-1"}} if json.get("user_id") else {"error": -124}


def with_contacts(r: NotificationRequest, channel: ChannelKind, **contacts: str) -> NotificationRequest:
    return r.model_copy(update={"channel": channel,
                                "recipient": Recipient(ref=r.recipient.ref, locale=r.recipient.locale, **contacts)})


async def phone_book(request: NotificationRequest) -> NotificationRequest:
    """An opener giving a request parked without its clear contacts (the ledger keeps none) its phone again."""
    if request.recipient.phone:
        return request
    return with_contacts(request, request.channel, phone="0912000000")


def http_dispatcher(gateway: Gateway, clock: FixedClock, attempts: int = 3, release_every_s: float = 0.01,
                    routine_workers: int = 1, opener: OpenContacts = as_is) -> Dispatcher:
    producer = FakeProducer()
    sms = SmsGateway(gateway, "http://gw")  # type: ignore[arg-type]
    zalo = ZaloZns(gateway, "http://gw", sms)  # type: ignore[arg-type]
    return Dispatcher(
        {ChannelKind.SMS: sms, ChannelKind.ZALO: zalo}, Ledger(LEDGER, producer), producer, OUT, spawn=Tasks(),
        backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=attempts), quiet=NEVER_QUIET,
        rates={"sms": 10_000.0, "zalo": 10_000.0}, segment_limit=3, routine_workers=routine_workers,
        emergency_workers=1, clock=clock, release_every_s=release_every_s, park_s=600, circuit=(3, 30),
        opener=opener)


async def test_a_probe_refused_before_any_call_does_not_close_the_circuit_of_a_gateway_still_down() -> None:
    """The SMS gateway down, its circuit open. The probe happens to be a request without a phone number: SmsGateway
    refuses it itself (`no_phone`, `local`) without calling the gateway: no answer from the gateway, so the circuit
    stays open (review: it closed it, and every routine SMS was called again)."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, release_every_s=3600)  # the parked ones are not released: the probe is ours
    d.start()
    try:
        for i in range(3):
            await d.submit(with_contacts(citizen_sms(f"open-{i}"), ChannelKind.SMS, phone="0912000000"), Calls())
        await settle(lambda: d.circuits is not None and d.circuits.is_open("sms"), "the SMS circuit open")
        await settle(lambda: len(d.ledger.deferred) == 3 and d.routine_backlog == 0, "the 3 held (parked)")
        clock.now += timedelta(seconds=31)
        done = Calls()
        await d.submit(with_contacts(citizen_sms("no-phone"), ChannelKind.SMS), done)  # the next request: the probe
        await settle(lambda: done.count == 1, "the probe dead-lettered (no_phone)")
        calls = gateway.calls["sms"]
        assert d.circuits.is_open("sms"), "a local refusal closed the circuit; the gateway was never reached"
        assert gateway.calls["sms"] == calls
    finally:
        await d.stop()


async def test_local_refusals_in_between_keep_a_dead_gateways_circuit_from_ever_opening() -> None:
    """One request in three without a phone (a staff member without one, a citizen with only an e-mail): refused
    before any call, it does not count (review: it started the count again, and a gateway down for good never
    opened its circuit)."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, attempts=1)  # one attempt each, then parked (or dead-lettered): in this order
    d.start()
    try:
        done = Calls()
        for i in range(12):
            r = citizen_sms(f"mix-{i}")
            r = with_contacts(r, ChannelKind.SMS) if i % 3 == 2 else with_contacts(r, ChannelKind.SMS,
                                                                                  phone="0912000000")
            await d.submit(r, done)
            await settle(lambda i=i: done.count == i + 1, "dealt with")
        assert d.circuits is not None and d.circuits.is_open("sms"), "never opened: no_phone counted as an answer"
        assert gateway.calls["sms"] == 3  # the 3 failures that opened it; the rest held (before: 8 calls, never open)
    finally:
        await d.stop()


async def test_an_sms_outage_met_by_zalo_fallbacks_opens_the_sms_circuit_not_zalos() -> None:
    """ZNS works; the SMS gateway is down. Zalo requests for citizens ZNS refuses fall back to SMS inside ZaloZns and
    fail there: each circuit counts its own provider (review: they counted against Zalo's, which opened, and a
    citizen ZNS would reach at once was parked for want of an SMS gateway it does not use)."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock)
    d.start()
    try:
        for i in range(3):  # no Zalo account: ZNS refuses, SMS fallback fails
            await d.submit(with_contacts(citizen_sms(f"nozalo-{i}"), ChannelKind.ZALO, phone="0912000000"), Calls())
        await settle(lambda: gateway.calls["sms"] >= 3, "the fallbacks tried")
        await settle(lambda: d.circuits is not None and d.circuits.is_open("sms"), "the SMS circuit open")
        assert not d.circuits.is_open("zalo")  # ZNS answered each time (a refusal for good): its circuit stays closed
        zalo_user = with_contacts(citizen_sms("zalo-user"), ChannelKind.ZALO, phone="0912000001", zalo_user_id="z1")
        done = Calls()
        await d.submit(zalo_user, done)
        await settle(lambda: done.count == 1, "the Zalo user's request dealt with")
        assert zalo_user.notification_id in d.ledger.done, "parked by the zalo circuit though ZNS works"
    finally:
        await d.stop()


def no_zalo(event_id: str) -> NotificationRequest:
    """A Zalo request for a citizen ZNS refuses (no Zalo account) with a phone: its fallback is SMS."""
    return with_contacts(citizen_sms(event_id), ChannelKind.ZALO, phone="0912000000")


def outcomes(d: Dispatcher, r: NotificationRequest) -> list[tuple[str, int, str | None]]:
    assert isinstance(d.producer, FakeProducer)
    return [(s["outcome"], s["attempt"], s.get("reason")) for m in d.producer.to(OUT.status)
            if (s := m.json())["notification_id"] == r.notification_id]


async def open_sms_circuit(d: Dispatcher) -> None:
    """Three SMS to the gateway that is down: its circuit opens, the three are parked."""
    for i in range(3):
        await d.submit(with_contacts(citizen_sms(f"opens-{i}"), ChannelKind.SMS, phone="0912000000"), Calls())
    await settle(lambda: d.circuits is not None and d.circuits.is_open("sms"), "the SMS circuit open")
    await settle(lambda: len(d.ledger.deferred) == 3 and d.routine_backlog == 0, "the 3 held (parked)")


async def test_a_zalo_fallback_while_the_sms_circuit_is_open_is_parked_without_calling_the_gateway() -> None:
    """The SMS gateway down, its circuit open: the SMS fallback of a Zalo request ZNS refused does not call the
    gateway; the request is parked as an SMS would be (`parked:circuit_open:sms`, one probe interval), its input
    record done, the lane empty. Once the gateway is back it is sent once, by SMS, under its own Idempotency-Key
    (before: every fallback called the gateway while its circuit was open, and was retried in memory)."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, opener=phone_book)
    d.start()
    try:
        await open_sms_circuit(d)
        sms_calls = gateway.calls["sms"]
        r, done = no_zalo("fb-1"), Calls()
        await d.submit(r, done)
        await settle(lambda: done.count == 1, "the Zalo request dealt with")
        assert gateway.calls["sms"] == sms_calls, "the fallback called the SMS gateway while its circuit was open"
        assert gateway.keys["zns", r.delivery_key] == 1 and d.routine_backlog == 0
        assert outcomes(d, r) == [("deferred", 0, "parked:circuit_open:sms")]
        assert d.ledger.deferred[r.notification_id].not_before == NOON + timedelta(seconds=30)
        assert d.circuits is not None and d.circuits.is_open("sms") and not d.circuits.is_open("zalo")
        gateway.sms_down = False
        clock.now += timedelta(seconds=31)  # due, with the three SMS: one of them is the probe
        await settle(lambda: r.notification_id in d.ledger.done and not d.ledger.deferred, "every one sent")
        assert gateway.keys["sms", r.delivery_key] == gateway.sms_taken[r.delivery_key] == 1
        assert not d.circuits.is_open("sms") and outcomes(d, r)[-1] == ("sent", 1, None)
    finally:
        await d.stop()


async def test_a_zalo_fallback_takes_the_half_open_sms_circuits_one_probe() -> None:
    """Past the probe interval the first fallback is the SMS circuit's one probe, as an SMS would be: the gateway
    still down, it fails, the circuit waits another interval, and the Zalo requests beside it are parked without a
    call (before: a fallback was no probe, each called the gateway and none moved the probe on)."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, release_every_s=3600)  # the three SMS parked are not released: no SMS probe
    d.start()
    try:
        await open_sms_circuit(d)
        clock.now += timedelta(seconds=31)
        sms_calls, done = gateway.calls["sms"], Calls()
        requests = [no_zalo(f"half-{i}") for i in range(5)]
        for r in requests:
            await d.submit(r, done)
        await settle(lambda: done.count == 5, "every Zalo request dealt with")
        assert gateway.calls["sms"] == sms_calls + 1, "more than one probe"
        assert all(r.notification_id in d.ledger.deferred for r in requests)
        assert d.circuits is not None and d.circuits.verdict(citizen_sms("next")) is Verdict.HOLD  # another interval
    finally:
        await d.stop()


async def test_a_zalo_fallback_beside_an_sms_probe_waits_for_its_outcome_then_is_sent_once() -> None:
    """An SMS probe out at the gateway: a Zalo request ZNS refuses waits in memory for the probe's outcome (neither
    a second call to the gateway nor parked), and is sent by SMS once the probe closed the circuit."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, release_every_s=3600, routine_workers=2)
    d.start()
    try:
        await open_sms_circuit(d)
        clock.now += timedelta(seconds=31)
        gateway.sms_down, gateway.sms_gate, sms_calls = False, asyncio.Event(), gateway.calls["sms"]
        await d.submit(with_contacts(citizen_sms("probe"), ChannelKind.SMS, phone="0912000000"), Calls())
        await settle(lambda: gateway.calls["sms"] == sms_calls + 1, "the probe out")
        r, done = no_zalo("beside"), Calls()
        await d.submit(r, done)
        await settle(lambda: gateway.keys["zns", r.delivery_key] >= 2, "the Zalo request asked again: waiting")
        assert gateway.keys["sms", r.delivery_key] == 0 and done.count == 0
        assert r.notification_id not in d.ledger.deferred
        gateway.sms_gate.set()
        await settle(lambda: done.count == 1, "the Zalo request dealt with")
        assert r.notification_id in d.ledger.done and gateway.keys["sms", r.delivery_key] == 1
        assert [o for o, *_ in outcomes(d, r)] == ["sent"]
    finally:
        await d.stop()


async def test_a_zalo_fallback_that_may_not_wait_for_the_sms_circuit_calls_the_gateway() -> None:
    """A Zalo request that expires before the SMS circuit's hold ends is called through its fallback, as an SMS
    would be, not left undone."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock)
    d.start()
    try:
        await open_sms_circuit(d)
        soon = no_zalo("fb-soon").model_copy(update={"expires_at": clock.now + timedelta(seconds=10)})
        done = Calls()
        await d.submit(soon, done)
        await settle(lambda: done.count == 1, "called, then dead-lettered")
        assert gateway.keys["sms", soon.delivery_key] == 3  # its budget, as before
        assert outcomes(d, soon)[-1] == ("dead_lettered", 3, "retries_exhausted:http_503")
    finally:
        await d.stop()


async def test_requests_released_beside_the_probe_wait_for_its_outcome_then_are_sent() -> None:
    """A provider that takes 20 ms: the parked requests released with the probe find it out. They wait a moment in
    memory for its outcome and are sent once it closed the circuit, none parked again (review: parked for as long as
    the outage had lasted, 9 of 10 waited 10 more minutes after a 20-minute outage had ended)."""
    sms, clock, producer = Provider(down=True, delay_s=0.02), FixedClock(NOON), FakeProducer()
    d = Dispatcher(
        {ChannelKind.SMS: sms}, Ledger(LEDGER, producer), producer, OUT, spawn=Tasks(),
        backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=40), quiet=NEVER_QUIET, rates={"sms": 10_000.0},
        segment_limit=3, routine_workers=4, emergency_workers=1, clock=clock, release_every_s=0.01, park_s=600,
        circuit=(3, 30))
    d.start()
    try:
        texts = [citizen_sms(f"slow-{i}") for i in range(10)]
        for r in texts:
            await d.submit(r, Calls())
        ids = [r.notification_id for r in texts]
        await settle(lambda: all(n in d.ledger.deferred for n in ids) and d.routine_backlog == 0, "all parked")
        clock.now += timedelta(minutes=20)  # the outage went on (probes failing meanwhile, say) ...
        sms.down = False  # ... and is over now; every parked request is due
        await settle(lambda: sum(sms.delivered.values()) >= 1, "the probe sent, the circuit closed")
        await settle(lambda: d.routine_backlog == 0 and not d._inflight, "the released dealt with")
        await settle(lambda: all(n in d.ledger.done for n in ids), "every one sent")  # the clock has not moved
        assert sorted(sms.delivered.values()) == [1] * 10
    finally:
        await d.stop()


async def test_a_held_request_that_expires_before_its_hold_ends_is_called_not_dropped() -> None:
    """A request that may not wait as long as the hold (it expires first) is called as before, not left undone
    (review: nothing tested this branch)."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, attempts=1)
    d.start()
    try:
        for i in range(3):
            await d.submit(with_contacts(citizen_sms(f"exp-open-{i}"), ChannelKind.SMS, phone="0912000000"), Calls())
        await settle(lambda: d.circuits is not None and d.circuits.is_open("sms"), "the SMS circuit open")
        soon = with_contacts(citizen_sms("soon"), ChannelKind.SMS, phone="0912000000").model_copy(
            update={"expires_at": clock.now + timedelta(seconds=10)})
        done, calls = Calls(), gateway.calls["sms"]
        await d.submit(soon, done)
        await settle(lambda: done.count == 1, "the expiring request dealt with (called, then dead-lettered)")
        assert gateway.calls["sms"] == calls + 1
    finally:
        await d.stop()


class ZnsDown:
    """ZNS refuses connections (unreached); the SMS gateway works."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def post(self, url: str, *, json: object = None, data: bytes | None = None,
                   headers: dict[str, str], read_reply: bool = True) -> dict[str, object] | str:
        if url.endswith("/sms"):
            self.calls["sms"] += 1
            return {"message_id": "m-1"}
        self.calls["zns"] += 1
        raise DeliveryError("ClientConnectorError", unreached=True)


async def test_a_zns_outage_with_a_working_sms_fallback_does_not_park_zalo_requests() -> None:
    """ZNS cannot be reached and the SMS fallback delivers: no failure for Zalo's circuit (second review: counted as
    one, Zalo's circuit opened and parked every Zalo message the SMS fallback would have sent at once)."""
    gateway, clock, producer = ZnsDown(), FixedClock(NOON), FakeProducer()
    sms = SmsGateway(gateway, "http://gw")  # type: ignore[arg-type]
    zalo = ZaloZns(gateway, "http://gw", sms)  # type: ignore[arg-type]
    d = Dispatcher(
        {ChannelKind.SMS: sms, ChannelKind.ZALO: zalo}, Ledger(LEDGER, producer), producer, OUT, spawn=Tasks(),
        backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=3), quiet=NEVER_QUIET,
        rates={"sms": 10_000.0, "zalo": 10_000.0}, segment_limit=3, routine_workers=1, emergency_workers=1,
        clock=clock, release_every_s=3600, park_s=600, circuit=(3, 30))
    d.start()
    try:
        for i in range(3):
            done = Calls()
            await d.submit(with_contacts(citizen_sms(f"z-{i}"), ChannelKind.ZALO, phone="0912000000"), done)
            await settle(lambda done=done: done.count == 1, "sent by the SMS fallback")
        assert gateway.calls["sms"] == 3
        late = with_contacts(citizen_sms("z-late"), ChannelKind.ZALO, phone="0912000000")
        done = Calls()
        await d.submit(late, done)
        await settle(lambda: done.count == 1, "dealt with")
        assert late.notification_id in d.ledger.done, "parked by Zalo's circuit though the SMS fallback works"
    finally:
        await d.stop()



class ZnsFailing:
    """ZNS answers 503 for good (Zalo may or may not have taken each message); the SMS gateway works. Every call is
    counted by path and Idempotency-Key."""

    def __init__(self) -> None:
        self.keys: Counter[tuple[str, str]] = Counter()

    async def post(self, url: str, *, json: object = None, data: bytes | None = None,
                   headers: dict[str, str], read_reply: bool = True) -> dict[str, object] | str:
        path = "sms" if url.endswith("/sms") else "zns"
        self.keys[path, headers[IDEMPOTENCY_HEADER]] += 1
        if path == "sms":
            return {"message_id": "m-1"}
        raise DeliveryError("http_503")


async def test_a_zalo_emergency_is_sent_by_sms_at_once_while_zns_answers_5xx_and_routine_ones_are_not() -> None:
    """ZNS answering 503 with the SMS gateway working: a storm warning to a Zalo contact with a phone is sent by SMS
    at its first try, under its own key, and ZNS's failure counts for Zalo's circuit (audit: retried as ZNS for its
    whole budget, then parked, never sent by the working gateway). A routine Zalo request is still retried as ZNS
    only (no SMS beside a ZNS message that may have arrived) until Zalo's circuit holds it."""
    gateway, clock, producer = ZnsFailing(), FixedClock(NOON), FakeProducer()
    sms = SmsGateway(gateway, "http://gw")  # type: ignore[arg-type]
    d = Dispatcher(
        {ChannelKind.SMS: sms, ChannelKind.ZALO: ZaloZns(gateway, "http://gw", sms)},  # type: ignore[arg-type]
        Ledger(LEDGER, producer), producer, OUT, spawn=Tasks(),
        backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=5), quiet=NEVER_QUIET,
        rates={"sms": 10_000.0, "zalo": 10_000.0}, segment_limit=3, routine_workers=1, emergency_workers=1,
        clock=clock, release_every_s=3600, park_s=600, circuit=(3, 30))
    [storm, *_] = emergencies("storm-zalo")
    urgent = with_contacts(storm, ChannelKind.ZALO, zalo_user_id="z-1", phone="0912000000")
    routine = with_contacts(citizen_sms("zalo-routine"), ChannelKind.ZALO, zalo_user_id="z-2", phone="0912000001")
    d.start()
    try:
        done = Calls()
        await d.submit(urgent, done)
        await settle(lambda: done.count == 1, "the storm warning dealt with")
        assert urgent.notification_id in d.ledger.done and outcomes(d, urgent) == [("sent", 1, None)]
        assert gateway.keys["zns", urgent.delivery_key] == gateway.keys["sms", urgent.delivery_key] == 1
        assert d.circuits is not None and d.circuits._circuits["zalo"].failed == 1
        await d.submit(routine, done)
        await settle(lambda: done.count == 2, "the routine Zalo request dealt with")
        assert gateway.keys["sms", routine.delivery_key] == 0 and routine.notification_id in d.ledger.deferred
        assert d.circuits.is_open("zalo")
    finally:
        await d.stop()


async def test_requests_held_while_a_probe_is_out_give_back_their_rate_tokens() -> None:
    """A probe out (held at the gateway) and more requests of its channel waiting than its rate allows: each pass of a
    waiting request gives back the token it took, so the channel's bucket is not emptied by requests that make no
    call, and the lane's other channels do not queue behind them (review: an e-mail waited 1.8 s behind 15 of them
    at 5 SMS a second)."""
    gate = asyncio.Event()
    sms = FakeChannel(DeliveryError("http_503"), gate=gate, gated=lambda r: r.event_id.startswith("probe"))
    email, clock, producer = FakeChannel(), FixedClock(NOON), FakeProducer()
    d = Dispatcher({ChannelKind.SMS: sms, ChannelKind.EMAIL: email}, Ledger(LEDGER, producer), producer, OUT,
                   spawn=Tasks(), backoff=Backoff(base_s=0.01, cap_s=0.02, max_attempts=1), quiet=NEVER_QUIET,
                   rates={"sms": 5.0}, segment_limit=3, routine_workers=2, emergency_workers=1, clock=clock,
                   release_every_s=3600, park_s=600, circuit=(1, 30))
    d.start()
    try:
        opened = Calls()
        await d.submit(citizen_sms("opens"), opened)
        await settle(lambda: opened.count == 1 and d.circuits is not None and d.circuits.is_open("sms"), "open")
        clock.now += timedelta(seconds=31)
        await d.submit(citizen_sms("probe-1"), Calls())
        await settle(lambda: len(sms.attempted) == 2, "the probe out")
        for i in range(15):
            await d.submit(citizen_sms(f"wait-{i}"), Calls())
        bucket = d.routine.buckets[ChannelKind.SMS]
        passes = d._waiting[d.routine]
        await settle(lambda: d._waiting[d.routine] == 15, "all 15 waiting for the probe")
        await asyncio.sleep(2.5)  # two passes each: 30 tokens taken at 5 a second, had none been given back
        assert passes <= 15 and bucket.wait_time(time.monotonic()) == 0  # a token is there for the next send
        mail, sent = by(ChannelKind.EMAIL, "mail"), Calls()
        await d.submit(mail, sent)
        await settle(lambda: sent.count == 1, "the e-mail sent while the probe is out")
        assert email.delivered == [mail.notification_id] and len(sms.attempted) == 2  # nobody else called
    finally:
        gate.set()
        await d.stop()


def test_a_circuit_probes_after_its_interval_whatever_the_wall_clock_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's circuits (the dispatcher's default clock) time their probe interval on a steady clock: the wall
    clock stepped back an hour (NTP) does not hold a recovered provider's routine requests for an hour more."""
    wall, ticks = [NOON], [1000.0]

    class Wall(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Wall:  # type: ignore[override]
            return wall[0]  # type: ignore[return-value]

    monkeypatch.setattr(jobs, "datetime", Wall)
    monkeypatch.setattr(time, "monotonic", lambda: ticks[0])
    producer = FakeProducer()
    d = Dispatcher({ChannelKind.SMS: Provider()}, Ledger(LEDGER, producer), producer, OUT, spawn=Tasks(),
                   backoff=Backoff(), quiet=NEVER_QUIET, rates={"sms": 10.0}, segment_limit=3, routine_workers=1,
                   emergency_workers=1, park_s=600, circuit=(1, 30))
    assert d.circuits is not None
    sms = citizen_sms("step-1")
    d.circuits.settle(sms, Verdict.CALL, False)  # open
    assert d.circuits.verdict(sms) is Verdict.HOLD
    wall[0], ticks[0] = NOON - timedelta(hours=1) + timedelta(seconds=31), ticks[0] + 31  # stepped back, 31 s on
    assert d.circuits.verdict(sms) is Verdict.PROBE
    wall[0], ticks[0] = NOON + timedelta(days=1), ticks[0] + 1  # stepped a day ahead: no second probe meanwhile
    d.circuits.settle(sms, Verdict.PROBE, False)
    assert d.circuits.verdict(sms) is Verdict.HOLD
