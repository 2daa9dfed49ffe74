"""The partition-aligned ledger without a broker: where entries go, what a worker holds, pruning, due releases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import Family
from schemas.notification import NotificationRequest
from schemas.topics import CANONICAL
from services.common.partitioner import partition_for
from services.notify import rules
from services.notify.ledger import Entry, Layout, Ledger, Unrouted
from services.notify.ledger_state import KV, MemoryKV
from services.notify.ledger_upkeep import LedgerLayoutError, keep_window_ms
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier
from tests.notify.fakes import FakeProducer

pytestmark = pytest.mark.unit
TOPIC, PARTITIONS, DAY_MS = "t.ledger", 6, 86_400_000
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@dataclass
class Sent:
    key: bytes | None
    value: bytes | None
    partition: int | None


@dataclass
class PartitionProducer:
    sent: list[Sent] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            partition: int | None = None) -> object:
        self.sent.append(Sent(key, value, partition))
        return None


@dataclass
class MemoryStores:
    opened: dict[int, MemoryKV] = field(default_factory=dict)

    def open(self, partition: int) -> KV:
        kv = self.opened[partition] = MemoryKV()
        return kv

    def discard(self, partition: int) -> None:
        del self.opened[partition]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def ledger(clock: Clock | None = None, keep_days: int = 15) -> tuple[Ledger, PartitionProducer, MemoryStores]:
    producer, stores = PartitionProducer(), MemoryStores()
    layout = Layout(PARTITIONS, producer, stores, keep_ms=keep_days * DAY_MS)
    return Ledger(TOPIC, FakeProducer(), layout=layout, clock=clock or Clock()), producer, stores


def request(event_id: str, commune: str = "02269", not_before: datetime | None = None) -> NotificationRequest:
    r = rules.for_event(dossier(event_id), directory(), Registry())[0]
    return r.model_copy(update={"commune": commune, "not_before": not_before})


def home(commune: str) -> int:
    return partition_for(commune.encode(), PARTITIONS)


async def test_entries_go_to_their_communes_partition() -> None:
    """A deferral goes to its commune's partition; a done entry too, routed by the job being delivered."""
    book, producer, _ = ledger()
    a, b = request("e-1", "02269"), request("e-2", "00004")
    assert home("02269") != home("00004")
    for p in (home("02269"), home("00004")):
        book.hold(p)
    await book.record_deferred(a)
    book.commune_of = {b.notification_id: "00004"}.get
    await book.record_done(b.notification_id, "sent")
    await book.record_done(a.notification_id, "sent")  # released deferral: routed from the store
    assert [s.partition for s in producer.sent] == [home("02269"), home("00004"), home("02269")]
    assert a.notification_id in book.done and b.notification_id in book.done and not book.deferred


async def test_a_done_entry_of_unknown_commune_is_refused() -> None:
    """Nobody said which commune an id belongs to: the write is refused rather than sent to a wrong partition."""
    book, producer, _ = ledger()
    with pytest.raises(Unrouted):
        await book.record_done("n-unknown", "sent")
    assert producer.sent == []


def test_only_held_partitions_are_applied_and_dropping_forgets() -> None:
    """Records of a partition not held are ignored; dropping a partition deletes its store and its ids."""
    book, _, stores = ledger()
    book.hold(1)
    done = Entry(state="done", outcome="sent").model_dump_json().encode()
    now_ms = int(NOW.timestamp() * 1000)
    book.apply_record(1, b"n-1", done, now_ms)
    book.apply_record(2, b"n-2", done, now_ms)
    assert set(book.done) == {"n-1"} and book.held == {1}
    book.drop(1)
    assert "n-1" not in book.done and stores.opened == {} and book.held == set()


def test_restore_skips_done_entries_older_than_the_window_but_keeps_deferrals() -> None:
    """An old done entry is not restored (no replay can reach it); an old deferral is (it awaits release)."""
    book, _, _ = ledger(keep_days=15)
    book.hold(0)
    old_ms = int((NOW - timedelta(days=16)).timestamp() * 1000)
    young_ms = int((NOW - timedelta(days=14)).timestamp() * 1000)
    done = Entry(state="done", outcome="sent").model_dump_json().encode()
    waiting = request("e-9", not_before=NOW)
    book.apply_record(0, b"old", done, old_ms)
    book.apply_record(0, b"young", done, young_ms)
    book.apply_record(0, waiting.notification_id.encode(),
                      Entry(state="deferred", request=waiting).model_dump_json().encode(), old_ms)
    assert set(book.done) == {"young"} and list(book.deferred) == [waiting.notification_id]


def test_an_old_deferral_done_past_the_window_does_not_come_back_due() -> None:
    """Read back in offset order: a deferral, then its done entry past the window: nothing is held for the id, so
    the restored worker does not release (and send) it a second time."""
    book, _, _ = ledger(keep_days=15)
    book.hold(0)
    deferred_ms = int((NOW - timedelta(days=20)).timestamp() * 1000)
    done_ms = int((NOW - timedelta(days=18)).timestamp() * 1000)
    waiting = Entry(state="deferred", request=request("e-7", not_before=NOW - timedelta(days=19)))
    reminder = waiting.request.notification_id.encode() if waiting.request else b""
    book.apply_record(0, reminder, waiting.model_dump_json().encode(), deferred_ms)
    book.apply_record(0, reminder, Entry(state="done", outcome="sent").model_dump_json().encode(), done_ms)
    assert list(book.deferred) == [] and set(book.done) == set()
    assert list(book.due(NOW, owned=lambda p: True)) == []


def test_pruning_follows_the_clock() -> None:
    """Done ids leave once older than the window, measured from when they were written; younger ones stay."""
    clock = Clock()
    book, _, _ = ledger(clock, keep_days=15)
    book.hold(0)
    book.apply("first", Entry(state="done", outcome="sent"))
    clock.now += timedelta(days=10)
    book.apply("second", Entry(state="done", outcome="sent"))
    clock.now += timedelta(days=6)
    assert book.prune() == 1 and set(book.done) == {"second"}
    clock.now += timedelta(days=10)
    assert book.prune() == 1 and len(book.done) == 0


async def test_due_releases_owned_partitions_in_due_order() -> None:
    """`due` gives what is due in the owned partitions, earliest first, nothing of a partition not owned, and
    passes over ids already in flight."""
    book, _, _ = ledger()
    mine, theirs = home("02269"), home("00004")
    book.hold(mine)
    book.hold(theirs)
    times = {"e-late": NOW - timedelta(minutes=1), "e-early": NOW - timedelta(hours=2), "e-future": NOW + timedelta(
        hours=1)}
    for event_id, at in times.items():
        await book.record_deferred(request(event_id, "02269", at))
    await book.record_deferred(request("e-other", "00004", NOW - timedelta(hours=3)))
    released = [r.not_before for r in book.due(NOW, owned=lambda p: p == mine)]
    assert released == [times["e-early"], times["e-late"]]
    in_flight = {request("e-early", "02269").notification_id}
    assert [r.not_before for r in book.due(NOW, owned=lambda p: p == mine, skip=in_flight)] == [times["e-late"]]


def test_a_window_longer_than_the_topics_retention_is_refused() -> None:
    """The ledger topic must keep entries at least as long as the store does, or a restore misses live ids."""
    assert keep_window_ms(32) == 32 * DAY_MS
    with pytest.raises(LedgerLayoutError):
        keep_window_ms(61)


def test_a_window_shorter_than_an_input_record_stays_readable_is_refused() -> None:
    """A done id forgotten while its event can still be read again (an offset reset, group offsets expired) lets
    the event be notified twice: the window covers the inputs' retention and segment and a day (review: the
    canonical topics went to 30 days' retention with the window left at 15). The default passes."""
    canonical = CANONICAL[Family.DOSSIER]
    readable_days = (int(canonical.config["retention.ms"]) + int(canonical.config["segment.ms"])) / DAY_MS
    with pytest.raises(LedgerLayoutError, match="notified twice"):
        keep_window_ms(15)
    with pytest.raises(LedgerLayoutError):
        keep_window_ms(readable_days + 0.5)
    assert keep_window_ms(readable_days + 1) == (readable_days + 1) * DAY_MS
    assert keep_window_ms(NotifySettings().ledger_keep_days) > 0
