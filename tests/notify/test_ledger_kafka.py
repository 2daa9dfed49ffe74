"""The partition-aligned ledger on the real broker: what a worker restores, what a new owner sees, pruning,
and deferred releases in due-time order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, OutOfOrderSequenceNumber

from schemas.notification import ChannelKind, NotificationRequest
from schemas.topics import Kind, TopicSpec
from services.common import clients
from services.common.admin import TopicConfigError, ensure_topics, reconcile_configs
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from services.notify import rules
from services.notify.jobs import Clock, Outputs, utcnow
from services.notify.ledger import Entry, Layout, Ledger
from services.notify.ledger_entry import EntryTooLarge
from services.notify.ledger_feed import LedgerFeed
from services.notify.ledger_store import RocksStores
from services.notify.policy import Backoff, QuietHours
from services.notify.release import OwnedDispatcher
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.notify.events import directory, dossier
from tests.notify.fakes import FakeChannel, Tasks
from tests.notify.test_dead_letters import TOPIC_LIMIT
from tests.notify.test_ledger_size import huge_webhook, too_large_webhook
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


async def test_the_largest_webhook_is_parked_on_the_broker_and_one_too_large_is_never_sent(
        kafka_bootstrap: str, notify_topics: Names, tmp_path: Path) -> None:
    """On the registry's ledger topic the deferral of the largest webhook intake publishes (~1.9 MB; the broker's
    default limit refused it) is written and restored whole by the next owner; one over the topic's limit is refused
    before it is sent, and its partition still takes the next entry (a refusal by the broker leaves the idempotent
    producer unable to write that partition: `test_a_record_refused_for_its_size_...` below)."""
    parked = huge_webhook().model_copy(update={"not_before": datetime.now(UTC) + timedelta(minutes=10)})
    partition = home(parked.commune)
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "a") as a:
        a.ledger.hold(partition)
        await a.ledger.record_deferred(parked)
        with pytest.raises(EntryTooLarge):
            await a.ledger.record_deferred(too_large_webhook())
        await sent_by(a, [request("after-the-refusal", parked.commune)])
    async with worker(kafka_bootstrap, notify_topics, tmp_path / "b") as b:
        await b.feed.hold("routine", {partition})
        assert b.ledger.deferred[parked.notification_id].payload == parked.payload
        assert request("after-the-refusal", parked.commune).notification_id in b.ledger.done
        assert too_large_webhook().notification_id not in b.ledger.deferred


async def test_notify_refuses_to_start_on_a_ledger_topic_that_would_refuse_a_parked_webhook(
        kafka_bootstrap: str, namespace: str) -> None:
    """A cluster whose ledger topic keeps the broker's default limit (made before the registry set one): notify's
    start (`ensure_topics`) is refused, naming the topic, the key and `commune-bus topics create`, which mends it
    (ADR 0028); it ran, and the first parked webhook of a large event ended every run after it."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    names = Names(namespace)
    ledger = next(spec for spec in names.specs if spec.name == names.ledger)
    await ensure_topics(conn, [replace(ledger, config={**ledger.config, "max.message.bytes": str(TOPIC_LIMIT)})])
    with pytest.raises(TopicConfigError) as refused:
        await ensure_topics(conn, names.specs)
    assert f"{names.ledger}: max.message.bytes is {TOPIC_LIMIT}" in str(refused.value)
    assert "commune-bus topics create" in str(refused.value)
    await reconcile_configs(conn, names.specs)

    async def starts() -> bool:
        try:
            await ensure_topics(conn, names.specs)
        except TopicConfigError:  # the altered config reaches every broker's view shortly after the alteration
            return False
        return True

    await eventually_async(starts, timeout=30, interval=0.5, what="the start passing once the ledger is mended")


async def test_a_record_refused_for_its_size_leaves_the_idempotent_producer_unable_to_write_its_partition(
        kafka_bootstrap: str, namespace: str) -> None:
    """Why the ledger refuses an entry before sending it rather than catching the broker's refusal: aiokafka
    (0.14.0) counts the refused batch's sequence numbers as used, so the broker refuses every later record of that
    producer to that partition (OutOfOrderSequenceNumber), a done entry included. If this fails, aiokafka recovers
    now, and the pre-check is no longer the only guard."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    topic = f"{namespace}.size-refusal"
    await ensure_topics(conn, [TopicSpec(topic, Kind.INTERNAL, "k", "d", partitions=1,
                                         config={"max.message.bytes": str(TOPIC_LIMIT)})])
    producer = clients.producer(conn, client_id="tests-size-refusal")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before", b"k", partition=0)
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(topic, b"x" * 2 * TOPIC_LIMIT, b"k", partition=0)
        with pytest.raises(OutOfOrderSequenceNumber):
            await producer.send_and_wait(topic, b"after", b"k", partition=0)
    finally:
        await producer.stop()
