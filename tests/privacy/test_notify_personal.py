"""notify's side of personal data, with fakes: sealed recipients, opening at delivery only, erased, redacted copies."""

from __future__ import annotations

import asyncio
from functools import partial

import orjson
import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from schemas.dossier import DossierStatusChanged
from schemas.notification import ChannelKind, NotificationRequest
from services.common.settings import KafkaConnection
from services.notify import rules
from services.notify.delivery import Dispatcher
from services.notify.jobs import Outputs
from services.notify.ledger import Ledger
from services.notify.personal import Opener, redact
from services.notify.policy import Backoff, QuietHours
from services.notify.subscribers import Registry, Subscriber
from services.privacy import crypto
from services.privacy.applicant import UNREADABLE_MARK, for_display, reaches, seal_event
from services.privacy.crypto import Erased, PrivacyError
from services.privacy.keyring import Keyring
from services.privacy.store import KeyStore
from tests.notify.events import directory, dossier, storm
from tests.notify.fakes import Calls, FakeChannel, FakeProducer, FixedClock, Tasks
from tests.privacy.keys import KEK, NOW, PEPPER, keyring
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
CONTACT = {"name": "Trần Văn Minh", "id_number": "001099000111", "phone": "0987654321", "email": "minh@example.vn",
           "preferred_locale": "vi"}


def sealed_dossier(ring: Keyring, event_id: str = "e-1", **applicant: str) -> DossierStatusChanged:
    event, _ = seal_event(ring, dossier(event_id, applicant={**CONTACT, **applicant}))
    assert isinstance(event, DossierStatusChanged)
    return event


def applicant_request(ring: Keyring, event_id: str = "e-1") -> NotificationRequest:
    [request] = rules.for_event(sealed_dossier(ring, event_id), directory(), Registry())
    return request


def test_rules_give_a_recipient_with_sealed_contacts_only() -> None:
    """From a sealed event the applicant's request carries sealed phone and e-mail, no clear value anywhere."""
    request = applicant_request(keyring())
    assert request.channel is ChannelKind.SMS and request.recipient.phone is None
    assert request.recipient.sealed is not None and set(request.recipient.sealed) == {"phone", "email"}
    text = request.model_dump_json()
    assert not [v for v in CONTACT.values() if len(v) > 2 and v in text]


@pytest.mark.parametrize(("applicant", "channel", "kept"), [
    ({"phone": "0000000000", "email": "minh@example.vn"}, ChannelKind.EMAIL, {"email"}),
    ({"phone": "-", "email": "minh@example.vn"}, ChannelKind.EMAIL, {"email"}),
    ({"zalo_user_id": "không có", "phone": "0912345678"}, ChannelKind.SMS, {"phone"}),
    ({"zalo_user_id": "N/A", "phone": "-", "email": "minh@example.vn"}, ChannelKind.EMAIL, {"email"}),
    ({"zalo_user_id": "-", "phone": "N/A", "email": "-"}, None, set()),
    ({"zalo_user_id": "z-8312470051", "phone": "0912345678"}, ChannelKind.ZALO, {"zalo_user_id", "phone"}),
])
@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "clear"])
def test_a_contact_that_is_a_forms_filler_is_never_the_channel(applicant: dict[str, str], channel: ChannelKind | None,
                                                               kept: set[str], sealed: bool) -> None:
    """A phone of "-" or "0000000000", or a Zalo id of "N/A", beside a real contact: the citizen is told on the real
    one (before: SMS or Zalo to the filler, which ZNS cannot fall back from to e-mail and the SMS gateway cannot
    deliver; notify audit). Sealed, the filler is not even sealed (intake leaves it out); in clear (sealing off),
    notify passes it over."""
    whole = {"name": "Trần Văn Minh", "id_number": "001099000111", "preferred_locale": "vi", **applicant}
    event = dossier("e-1", applicant=whole)
    if sealed:
        event, _ = seal_event(keyring(), event)
        assert isinstance(event, DossierStatusChanged) and event.data.applicant is not None
        assert {f for f in ("phone", "email", "zalo_user_id") if getattr(event.data.applicant, f)} == kept
    told = [r for r in rules.for_event(event, directory(), Registry()) if r.recipient.ref == "applicant"]
    assert [r.channel for r in told] == ([] if channel is None else [channel])


@given(st.text(st.sampled_from("0123456789+ -."), max_size=14) | st.text(max_size=14))
def test_reaches_says_what_identifies_says_of_a_phone(value: str) -> None:
    """`reaches` takes a plainly written domestic number in short (sealing is on intake's hot path): the same answer."""
    assert reaches("phone", value) == crypto.identifies("phone", value)


async def test_delivery_opens_only_what_the_channel_needs() -> None:
    """An SMS request is opened to its phone alone; the e-mail stays unopened. The sealed tokens stay beside the
    clear phone, so the opened request, were it ever written, would be redacted to the sealed one."""
    ring = keyring()
    request = applicant_request(ring)
    clear = await Opener(directory(), ring)(request)
    assert clear.recipient.phone == CONTACT["phone"] and clear.recipient.email is None
    assert clear.recipient.sealed == request.recipient.sealed
    assert redact(clear) == request and CONTACT["phone"] not in redact(clear).model_dump_json()


async def test_an_unknown_key_is_looked_up_once_more_then_erased() -> None:
    """A key not read yet: the opener refreshes the key store and retries; still unknown, it is erased."""
    writer, reader, refreshes = keyring(), keyring(), Calls()
    event, records = seal_event(writer, dossier("e-2", applicant=CONTACT))
    [request] = rules.for_event(event, directory(), Registry())

    async def refresh() -> None:
        refreshes()
        for r in records:
            reader.apply(r.record_key, r.model_dump_json().encode())

    assert (await Opener(directory(), reader, refresh)(request)).recipient.phone == CONTACT["phone"]
    assert refreshes.count == 1

    async def nothing() -> None:
        return None

    with pytest.raises(Erased):
        await Opener(directory(), keyring(), nothing)(request)


async def test_a_directory_contact_written_without_its_phone_is_filled_again() -> None:
    """Staff contacts lose their clear fields when written (ledger, DLQ) and get them back from the directory."""
    [operator] = [r for r in rules.for_event(storm("s-1"), directory(), Registry()) if r.recipient.ref == "operator:c1"]
    written = redact(operator)
    assert written.recipient.phone is None and "0900000004" not in written.model_dump_json()
    assert (await Opener(directory())(written)).recipient.phone == "0900000004"


async def test_an_entitled_webhook_gets_the_applicant_opened_and_none_once_erased() -> None:
    """A subscriber with include_personal_data gets the clear applicant at delivery; after erasure, no applicant."""
    ring = keyring()
    sub = Subscriber.model_validate({"name": "s", "url": "http://127.0.0.1:9/h", "secret": "x" * 16,
                                     "include_personal_data": True})
    event, records = seal_event(ring, dossier("e-3", applicant=CONTACT))
    [hook] = [r for r in rules.for_event(event, directory(), Registry(subscribers=[sub]))
              if r.channel is ChannelKind.WEBHOOK]
    assert hook.payload is not None and CONTACT["phone"] not in hook.payload
    opened = await Opener(directory(), ring)(hook)
    assert orjson.loads(opened.payload or "")["data"]["applicant"]["phone"] == CONTACT["phone"]
    ring.apply(records[0].record_key, None)
    gone = await Opener(directory(), ring)(hook)
    assert "applicant" not in orjson.loads(gone.payload or "")["data"]


async def test_the_dispatcher_skips_an_erased_applicant_as_erased() -> None:
    """Erased: no provider call, ledger done with outcome erased, a status `erased`, the input released."""
    ring, producer, tasks, channel, done = keyring(), FakeProducer(), Tasks(), FakeChannel(), Calls()
    request = applicant_request(ring, "e-4")
    assert request.recipient.sealed is not None
    ring.apply(f"{request.recipient.sealed['phone'].subject}/{request.recipient.sealed['phone'].key_id}".encode(),
               None)
    out = Outputs(status="t.status", dlq="t.dlq")
    dispatcher = Dispatcher({ChannelKind.SMS: channel}, Ledger("t.ledger", producer), producer, out, spawn=tasks,
                            backoff=Backoff(), quiet=QuietHours(NOW.time(), NOW.time()), rates={"sms": 1000.0},
                            segment_limit=3, routine_workers=1, emergency_workers=1, clock=FixedClock(NOW),
                            opener=Opener(directory(), ring))
    dispatcher.start()
    try:
        await dispatcher.submit(request, done)
        await eventually_async(lambda: done.count == 1, timeout=5, interval=0.005, what="the input released")
    finally:
        await dispatcher.stop()
    assert channel.attempted == [] and tasks.failures() == []
    assert [m.json()["outcome"] for m in producer.to("t.status")] == ["erased"]
    assert [m.json() for m in producer.to("t.ledger")] == [{"state": "done", "outcome": "erased"}]


class _Rebalancing:
    """The dispatcher's gate while a rebalance is under way: a call waits at `enter` until `settled`."""

    def __init__(self) -> None:
        self.settled, self.waiting = asyncio.Event(), asyncio.Event()

    async def enter(self, source: object = None) -> None:
        self.waiting.set()
        await self.settled.wait()

    def leave(self, source: object = None) -> None:
        pass

    def check(self, source: object = None) -> None:
        pass


async def erased_at_the_gate(event_id: str, revoked: bool) -> tuple[FakeChannel, FakeProducer, Tasks]:
    """A request whose contacts were opened waits at the gate (a rebalance); the erasure's tombstone is read
    meanwhile and, if `revoked`, the request's partition goes to another worker; then the rebalance ends."""
    ring, producer, tasks, channel, done = keyring(), FakeProducer(), Tasks(), FakeChannel(), Calls()
    request = applicant_request(ring, event_id)
    assert request.recipient.sealed is not None
    phone = request.recipient.sealed["phone"]
    dispatcher = Dispatcher({ChannelKind.SMS: channel}, Ledger("t.ledger", producer), producer,
                            Outputs(status="t.status", dlq="t.dlq"), spawn=tasks, backoff=Backoff(),
                            quiet=QuietHours(NOW.time(), NOW.time()), rates={"sms": 1000.0}, segment_limit=3,
                            routine_workers=1, emergency_workers=1, clock=FixedClock(NOW),
                            opener=Opener(directory(), ring))
    dispatcher.gate = gate = _Rebalancing()
    dispatcher.start()
    try:
        await dispatcher.submit(request, done, source="partition-3")
        await asyncio.wait_for(gate.waiting.wait(), 5)
        ring.apply(f"{phone.subject}/{phone.key_id}".encode(), None)  # the erasure, read while the call waits
        if revoked:
            dispatcher.holds = lambda source: False
        gate.settled.set()
        await eventually_async(lambda: not dispatcher._inflight, timeout=5, interval=0.005, what="the job ended")
    finally:
        await dispatcher.stop()
    return channel, producer, tasks


async def test_an_erasure_read_while_the_call_waits_out_a_rebalance_stops_it() -> None:
    """The contacts are opened, the call waits at the gate (a rebalance), the erasure's tombstone is read meanwhile:
    no provider call, outcome erased (before: the phone opened before the erasure was texted, status `sent`)."""
    channel, producer, tasks = await erased_at_the_gate("e-race", revoked=False)
    assert channel.attempted == [] and tasks.failures() == []
    assert [m.json()["outcome"] for m in producer.to("t.status")] == ["erased"]


async def test_an_erasure_read_at_the_gate_of_a_partition_gone_meanwhile_writes_nothing() -> None:
    """The same, and the request's partition went to another worker during that rebalance: this worker writes no
    status and no ledger entry (the new owner does; review: the erasure was recorded before the ownership check)."""
    channel, producer, tasks = await erased_at_the_gate("e-gone", revoked=True)
    assert channel.attempted == [] and tasks.failures() == []
    assert producer.to("t.status") == [] and producer.to("t.ledger") == []


class _Lagging:
    """A key store's consumer whose follower never gets past its end offsets (a partial outage); `refresh`'s
    watermark reader too."""

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("keys", 0)}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 5)

    of = end_offsets  # as `changelog.Watermarks`


async def test_a_key_store_that_is_behind_delays_the_request_and_never_dead_letters() -> None:
    """A key store still behind when `refresh` gives up is a transient condition: the request waits and is tried
    again (the lanes go on: ending the run, as a first fix did, cut other lanes' provider calls short and repeated
    them), nothing is dead-lettered or marked done meanwhile, and it is sent once the store has caught up. It was the
    built-in TimeoutError, handled as tampered data: dead-lettered `unopenable` and done for good."""
    writer, reader = keyring(), keyring()
    event, records = seal_event(writer, dossier("e-behind", applicant=CONTACT))
    [request] = rules.for_event(event, directory(), Registry())
    store = KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "tests", reader, client_id="tests-keys")
    unused, store._consumer = store._consumer, _Lagging()  # type: ignore[assignment]
    store._watermarks = store._consumer  # type: ignore[assignment]  # its high watermarks: the same ends
    await unused.stop()
    channel, producer, tasks, done = FakeChannel(), FakeProducer(), Tasks(), Calls()
    dispatcher = Dispatcher({ChannelKind.SMS: channel}, Ledger("t.ledger", producer), producer,
                            Outputs(status="t.status", dlq="t.dlq"), spawn=tasks,
                            backoff=Backoff(base_s=0.05, cap_s=0.1),
                            quiet=QuietHours(NOW.time(), NOW.time()), rates={"sms": 1000.0}, segment_limit=3,
                            routine_workers=1, emergency_workers=1, clock=FixedClock(NOW),
                            opener=Opener(directory(), reader, partial(store.refresh, timeout_s=0.1)))
    dispatcher.start()
    try:
        with capture_logs() as logs:
            await dispatcher.submit(request, done)
            await eventually_async(lambda: any(e["event"] == "notify.keys_behind" for e in logs), timeout=5,
                                   interval=0.01, what="the request put back")
            assert tasks.failures() == [] and done.count == 0 and channel.attempted == []
            assert producer.sent == []  # no dead letter, no ledger entry, no status
            for record in records:  # the store catches up
                reader.apply(record.record_key, record.model_dump_json().encode())
            await eventually_async(lambda: done.count == 1, timeout=5, interval=0.01, what="sent once caught up")
    finally:
        await dispatcher.stop()
    assert len(channel.attempted) == 1 and tasks.failures() == []
    assert [m.json()["outcome"] for m in producer.to("t.status")] == ["sent"]


async def test_a_key_wrapped_under_a_kek_not_given_here_waits_and_is_never_counted_erased() -> None:
    """A rolling KEK rotation: intake already seals under kek-2, notify was not given it yet. The key store can't read
    the new key records (counted, skipped); the request is put back and tried again (`notify.key_unreadable`):
    no provider call, no ledger entry, no status, no dead letter; an operator's screen shows the field as
    `[key not readable here]`, not `[erased]`. It was taken for an erasure: the ledger recorded it done, erased, and
    once notify had the KEK the redelivered event was skipped (audit of 2026-12-02)."""
    rotated = Keyring({"kek-1": KEK, "kek-2": bytes(range(1, 33))}, "kek-2", PEPPER, clock=lambda: NOW)
    reader = keyring()
    event, records = seal_event(rotated, dossier("e-rotated", applicant=CONTACT))
    for record in records:
        with pytest.raises(PrivacyError):
            reader.apply(record.record_key, record.model_dump_json().encode())
    assert isinstance(event, DossierStatusChanged) and event.data.applicant is not None
    assert for_display(reader, event.id, event.data.applicant)["phone"] == UNREADABLE_MARK
    [request] = rules.for_event(event, directory(), Registry())
    channel, producer, tasks, done = FakeChannel(), FakeProducer(), Tasks(), Calls()
    dispatcher = Dispatcher({ChannelKind.SMS: channel}, Ledger("t.ledger", producer), producer,
                            Outputs(status="t.status", dlq="t.dlq"), spawn=tasks,
                            backoff=Backoff(base_s=0.05, cap_s=0.1), quiet=QuietHours(NOW.time(), NOW.time()),
                            rates={"sms": 1000.0}, segment_limit=3, routine_workers=1, emergency_workers=1,
                            clock=FixedClock(NOW), opener=Opener(directory(), reader))
    dispatcher.start()
    try:
        with capture_logs() as logs:
            await dispatcher.submit(request, done)
            await eventually_async(lambda: sum(e["event"] == "notify.key_unreadable" for e in logs) >= 2, timeout=5,
                                   interval=0.01, what="the request put back, and tried again")
        assert tasks.failures() == [] and done.count == 0 and channel.attempted == []
        assert producer.sent == []  # not done, not erased, not dead-lettered
    finally:
        await dispatcher.stop()
