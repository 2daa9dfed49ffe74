"""The delivery ledger's pure logic with a recording producer: what it applies, what it writes, what it reads back."""

from __future__ import annotations

import pytest

from schemas.notification import NotificationRequest
from services.notify import rules
from services.notify.ledger import Entry, Ledger
from services.notify.personal import redact
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier
from tests.notify.fakes import FakeProducer

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
    """A deferred request read back from the topic is the same request (no clear contact), due at the same time."""
    producer = FakeProducer()
    deferred = request("d-1").model_copy(update={"not_before": dossier().time})
    await Ledger(TOPIC, producer).record_deferred(deferred)
    restored = replay(producer)
    assert restored.deferred == {deferred.notification_id: redact(deferred)} and not restored.done
    written = producer.to(TOPIC)[0].value or b""
    assert deferred.recipient.phone and deferred.recipient.phone.encode() not in written


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
