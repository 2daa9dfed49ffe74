"""The partition-aligned ledger on the real broker: what a worker restores, what a new owner sees, pruning,
and deferred releases in due-time order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.notification import ChannelKind, NotificationRequest
from services.common import clients
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from services.notify import rules
from services.notify.jobs import Clock, Outputs, utcnow
from services.notify.ledger import Entry, Layout, Ledger
from services.notify.ledger_feed import LedgerFeed
from services.notify.ledger_store import RocksStores
from services.notify.policy import Backoff, QuietHours
from services.notify.release import OwnedDispatcher
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.notify.events import directory, dossier
from tests.notify.fakes import FakeChannel, Tasks
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
PARTITIONS = 6
DAY_MS = 86_400_000
COMMUNES = [f"{c:05d}" for c in range(2200, 2300)]


def home(commune: str) -> int:
    return partition_for(commune.encode(), PARTITIONS)


def request(event_id: str, commune: str, not_before: datetime | None = None) -> NotificationRequest:
    r = rules.for_event(dossier(event_id), directory(), Registry())[0]
    return r.model_copy(update={"commune": commune, "not_before": not_before})


@dataclass
class Worker:
    ledger: Ledger
    feed: LedgerFeed
    producer: AIOKafkaProducer


@asynccontextmanager
async def worker(bootstrap: str, names: Names, tmp: Path, *, keep_days: float = 15,
                 clock: Clock = utcnow) -> AsyncIterator[Worker]:
    """A ledger with its RocksDB stores, its tail running, and a producer: notify's ledger half of a worker."""
    conn = KafkaConnection(bootstrap=bootstrap)
    producer = clients.producer(conn, client_id="tests-ledger")
    await producer.start()
    stores = RocksStores(tmp)
    ledger = Ledger(names.ledger, producer, clock=clock,
                    layout=Layout(PARTITIONS, producer, stores, keep_ms=int(keep_days * DAY_MS)))
    feed = LedgerFeed(conn, ledger, catch_up_s=20)
    await feed.open()
    tail = asyncio.create_task(feed.follow())
    try:
        yield Worker(ledger, feed, producer)
    finally:
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
        await feed.close()
        stores.close()
        await producer.stop()


async def sent_by(w: Worker, requests: list[NotificationRequest]) -> None:
    """`w` records each request done, routed by its commune (as the dispatcher does while delivering)."""
    communes = {r.notification_id: r.commune for r in requests}
    w.ledger.commune_of = communes.get
    for r in requests:
        await w.ledger.record_done(r.notification_id, "sent")


async def test_a_worker_restores_only_the_partitions_it_owns(kafka_bootstrap: str, notify_topics: Names,
                                                           tmp_path: Path) -> None:
    """Entries of every partition are on the topic; a worker owning input partitions 1 and 4 holds those two."""
    requests = [request(f"own-{c}", c) for c in COMMUNES]
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "a") as a:
        for p in range(PARTITIONS):
            a.ledger.hold(p)
        await sent_by(a, requests)
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "b") as b:
        await b.feed.hold("routine", {1, 4})
        mine = {r.notification_id for r in requests if home(r.commune) in {1, 4}}
        assert b.ledger.held == {1, 4} and set(b.ledger.done) == mine and 0 < len(mine) < len(requests)
        assert sorted(p.name for p in b.ledger.layout.stores.root.iterdir()) == ["p1", "p4"]  # type: ignore[union-attr]
        await b.feed.hold("routine", {4})  # the next assignment lets partition 1 go
        assert b.ledger.held == {4} and set(b.ledger.done) == {r.notification_id for r in requests
                                                               if home(r.commune) == 4}


async def test_a_new_owner_sees_what_the_old_owner_sent_up_to_the_handover(kafka_bootstrap: str,
                                                                         notify_topics: Names,
                                                                         tmp_path: Path) -> None:
    """Ids the old owner recorded up to the assignment are done for the new owner once `hold` returns, and ids
    recorded after it reach the new owner through the tail: none would be sent again."""
    before = [request(f"before-{c}", c) for c in COMMUNES[:40]]
    after = [request(f"after-{c}", c) for c in COMMUNES[40:80]]
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "old") as old, \
            worker(kafka_bootstrap, notify_topics, tmp_path / "new") as new:
        await old.feed.hold("routine", set(range(PARTITIONS)))
        await sent_by(old, before)
        await new.feed.hold("routine", set(range(PARTITIONS)))  # no wait in between: the catch-up must see them
        assert {r.notification_id for r in before} <= set(new.ledger.done)
        await sent_by(old, after)  # e.g. a call the old owner drained during its revocation
        await eventually_async(lambda: {r.notification_id for r in after} <= set(new.ledger.done), timeout=20,
                               interval=0.1, what="later entries tailed by the new owner")


async def test_restore_and_prune_drop_old_done_ids_and_keep_young_ones(kafka_bootstrap: str, notify_topics: Names,
                                                                      tmp_path: Path) -> None:
    """Done entries written 20 days ago are not restored, 10-day-old ones are, and later fall to the pruning."""
    now = datetime.now(UTC)
    done = Entry(state="done", outcome="sent").model_dump_json().encode()
    producer = clients.producer(KafkaConnection(bootstrap=kafka_bootstrap), client_id="tests-ledger")
    await producer.start()
    try:
        for age, prefix in ((20, "old"), (10, "young")):
            stamp = int((now - timedelta(days=age)).timestamp() * 1000)
            for i in range(30):
                await producer.send_and_wait(notify_topics.ledger, done, f"{prefix}-{i}".encode(), partition=2,
                                             timestamp_ms=stamp)
    finally:
        await producer.stop()
    later = now

    def clock() -> datetime:
        return later

    async with worker(kafka_bootstrap, notify_topics, tmp_path, keep_days=15, clock=clock) as w:
        await w.feed.hold("urgent", {2})
        assert set(w.ledger.done) == {f"young-{i}" for i in range(30)}
        assert w.ledger.prune() == 0
        later = now + timedelta(days=6)
        assert w.ledger.prune() == 30 and len(w.ledger.done) == 0


async def test_deferred_requests_are_released_in_due_order_by_the_communes_owner(
        kafka_bootstrap: str, notify_topics: Names, tmp_path: Path) -> None:
    """Deferrals recorded by one worker are restored by the owner of their partition and sent earliest due first,
    the not yet due one staying; a partition the worker does not own is not released."""
    commune = COMMUNES[0]
    now = datetime.now(UTC)
    dues = {f"due-{m}": now - timedelta(minutes=m) for m in (5, 50, 20, 35)}
    waiting = request("due-later", commune, now + timedelta(hours=3))
    other = next(c for c in COMMUNES if home(c) != home(commune))
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "a") as a:
        a.ledger.hold(home(commune))
        a.ledger.hold(home(other))
        for event_id, at in dues.items():
            await a.ledger.record_deferred(request(event_id, commune, at))
        await a.ledger.record_deferred(waiting)
        await a.ledger.record_deferred(request("due-other", other, now - timedelta(hours=1)))
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "b") as b:
        await b.feed.hold("routine", {home(commune), home(other)})
        channel = FakeChannel()
        tasks = Tasks()
        dispatcher = owned_dispatcher(b.ledger, b.producer, notify_topics, channel, tasks, release_every_s=0.05)
        dispatcher.owns_partition = _only(home(commune))
        dispatcher.start()
        try:
            expected = [request(e, commune).notification_id for e in sorted(dues, key=lambda e: dues[e])]
            await eventually_async(lambda: len(channel.delivered) == len(expected), timeout=20, interval=0.05,
                                   what="due deferrals sent")
            assert dispatcher.release_due() == 0  # the rest is not due, or not this worker's
        finally:
            await dispatcher.stop()
        assert channel.delivered == expected and not tasks.failures()
        assert set(b.ledger.deferred) == {waiting.notification_id, request("due-other", other).notification_id}
        assert set(expected) <= set(b.ledger.done)


def owned_dispatcher(ledger: Ledger, producer: AIOKafkaProducer, names: Names, channel: FakeChannel, tasks: Tasks, *,
                     release_every_s: float) -> OwnedDispatcher:
    """notify's dispatcher over `ledger` with one fake SMS channel and no quiet hours; its done entries routed."""
    dispatcher = OwnedDispatcher(
        {ChannelKind.SMS: channel}, ledger, producer, Outputs(names.status, names.dlq), spawn=tasks,
        backoff=Backoff(), quiet=QuietHours(time(0, 0), time(0, 0)), rates={"sms": 1000.0}, segment_limit=3,
        routine_workers=1, emergency_workers=1, release_every_s=release_every_s)
    ledger.commune_of = dispatcher.commune_of
    return dispatcher


def _only(partition: int) -> Callable[[int], bool]:
    return lambda p: p == partition


async def test_a_released_deferral_still_queued_when_its_partition_leaves_is_not_sent(
        kafka_bootstrap: str, notify_topics: Names, tmp_path: Path) -> None:
    """A due deferral released here but not yet sent when its input partition is revoked is dropped (its claim
    names the partition): the new owner releases it from the ledger partition it now holds, so it goes out once."""
    commune = COMMUNES[0]
    due = request("due-moved", commune, datetime.now(UTC) - timedelta(minutes=5))
    async with worker(kafka_bootstrap, notify_topics, tmp_path) as w:
        w.ledger.hold(home(commune))
        await w.ledger.record_deferred(due)
        channel, tasks = FakeChannel(), Tasks()
        dispatcher = owned_dispatcher(w.ledger, w.producer, notify_topics, channel, tasks, release_every_s=3600)
        dispatcher.owns_partition = _only(home(commune))
        dispatcher.source_of = lambda p: ("dossier", p)
        held: set[object] = set()  # the partition is revoked between the release and the attempt
        dispatcher.holds = lambda source: source in held
        assert dispatcher.release_due() == 1
        dispatcher.start()
        try:
            await eventually_async(lambda: not dispatcher._inflight, timeout=10, interval=0.05,
                                   what="the queued job dropped")
        finally:
            await dispatcher.stop()
        assert channel.delivered == [] and not tasks.failures()
        assert due.notification_id in w.ledger.deferred and due.notification_id not in w.ledger.done
