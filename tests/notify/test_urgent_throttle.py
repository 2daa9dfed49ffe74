"""The urgent consumer (announcements, where emergencies arrive) pauses too, once the emergency jobs held pass the
limit, or the routine ones `URGENT_HEADROOM` times it: it used to never pause, so a flood of announcements behind a
slow provider filled memory (audit: 59,864 queued jobs, 198 MB); and it does not pause for the routine lane's
retries (review). Real `Records.consume` and `Dispatcher`; a consumer serving batches of canonical announcements;
a provider that never answers, or one that is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import time

import pytest
from aiokafka import TopicPartition

from schemas import wire
from schemas.notification import ChannelKind
from services.cli import notify_dlq
from services.cli.notify_letters import NotifyLetter, letter, replayed
from services.common.settings import KafkaConnection
from services.notify import deadletters
from services.notify.channels.base import DeliveryError, Message, Receipt
from services.notify.delivery import Dispatcher
from services.notify.jobs import Outputs
from services.notify.ledger import Ledger
from services.notify.offsets import OffsetTracker
from services.notify.pauses import Pauses
from services.notify.policy import QuietHours
from services.notify.records import URGENT_HEADROOM, Lane, Records
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.notify.events import directory, storm
from tests.notify.fakes import FixedClock, OnePartition, Tasks
from tests.notify.test_dispatcher import NOON, citizen_sms, emergencies
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
LIMIT = 200
BATCH = 100


class Unanswering:
    """A provider that never answers: every job stays in the dispatcher."""

    async def send(self, message: object) -> Receipt:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


class Down:
    """A provider that is down: every send fails at once, to be retried."""

    async def send(self, message: object) -> Receipt:
        raise DeliveryError("unavailable")

    async def close(self) -> None:
        pass


class Producer:
    async def send_and_wait(self, *args: object, **kwargs: object) -> None:
        return None

    async def send(self, *args: object, **kwargs: object) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Record:
    def __init__(self, offset: int, category: str) -> None:
        encoded = wire.encode(storm(f"ann-{offset}", category=category))
        self.offset, self.key, self.value, self.headers, self.timestamp = (offset, encoded.key, encoded.value,
                                                                           encoded.headers, 0)


class Announcements(OnePartition):
    """Batches of `BATCH` announcements of one category on one partition, for as long as it is not paused."""

    def __init__(self, tp: TopicPartition, category: str) -> None:
        super().__init__(tp)
        self.category, self.read = category, 0

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0)
        if self.tp in self._paused or self.read >= 100 * LIMIT:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        batch = [Record(self.read + i, self.category) for i in range(BATCH)]
        self.read += BATCH
        return {self.tp: batch}


class Supervisor:
    stop = asyncio.Event()

    def fail(self, exc: BaseException) -> None:
        raise exc


def dispatcher_with(channel: object, settings: NotifySettings, producer: Producer) -> Dispatcher:
    return Dispatcher({k: channel for k in ("sms", "email", "zalo", "webhook")},  # type: ignore[misc]
                      Ledger("ledger", producer), producer, Outputs("status", "dlq"),  # type: ignore[arg-type]
                      spawn=Tasks(), backoff=settings.backoff(), quiet=QuietHours(time(0), time(0)),
                      rates=settings.rate_per_s, segment_limit=3, routine_workers=settings.routine_workers,
                      emergency_workers=settings.emergency_workers)


async def consume_until_paused(dispatcher: Dispatcher, settings: NotifySettings, producer: Producer,
                               consumer: Announcements) -> None:
    records = Records(settings, Names(""), directory(), Registry(), producer, dispatcher,  # type: ignore[arg-type]
                      OffsetTracker(), Supervisor())  # type: ignore[arg-type]
    lane: Lane = "urgent"
    consuming = asyncio.create_task(records.consume(consumer, Pauses(consumer), lane))  # type: ignore[arg-type]
    try:
        await eventually_async(lambda: consumer.paused() or consumer.read >= 100 * LIMIT, timeout=30)
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)


@pytest.mark.parametrize("category", ["general", "storm"])  # routine-lane announcements, emergencies
async def test_a_flood_of_announcements_pauses_the_urgent_consumer(category: str) -> None:
    settings, producer = NotifySettings(max_pending=LIMIT), Producer()
    dispatcher = dispatcher_with(Unanswering(), settings, producer)
    dispatcher.start()
    consumer = Announcements(TopicPartition(Names("").announcement, 0), category)
    try:
        await consume_until_paused(dispatcher, settings, producer, consumer)
        assert consumer.paused(), f"read {consumer.read} announcements, never paused"
        if category == "storm":
            assert LIMIT < dispatcher.emergency_backlog <= LIMIT + 2 * BATCH
        else:
            assert URGENT_HEADROOM * LIMIT < dispatcher.routine_backlog <= URGENT_HEADROOM * LIMIT + 2 * BATCH
    finally:
        await dispatcher.stop()


async def test_the_routine_lanes_retries_pause_the_routine_consumer_not_the_urgent_one() -> None:
    """A routine provider down: routine jobs wait for their retries, not queued. They count in the routine backlog,
    which pauses the routine consumer (before: only the queue counted, so it read on and the retries grew without
    bound), and not in the emergency one: storm warnings are still read (review: the urgent consumer counted every
    retry, paused first, and left storm warnings unread while dossier messages flowed)."""
    settings = NotifySettings(max_pending=LIMIT, retry_base_s=60, retry_cap_s=60,  # tried once, then waiting
                              rate_per_s={"sms": 100_000, "zalo": 100_000, "email": 100_000, "webhook": 100_000})
    producer = Producer()
    dispatcher = dispatcher_with(Down(), settings, producer)
    dispatcher.start()
    records = Records(settings, Names(""), directory(), Registry(), producer, dispatcher,  # type: ignore[arg-type]
                      OffsetTracker(), Supervisor())  # type: ignore[arg-type]
    tp = TopicPartition(Names("").announcement, 0)
    try:
        offset = 0
        while dispatcher.routine_backlog < LIMIT * 3 // 2:
            await records.handle(tp, Record(offset, "general"), 0)  # type: ignore[arg-type]
            offset += 1
        await eventually_async(lambda: dispatcher.routine.queue.qsize() == 0, timeout=30,
                               what="the routine jobs tried once and waiting for their retries")
        routine_held, routine_limit = records.throttle("routine")
        urgent_held, urgent_limit = records.throttle("urgent")
        assert routine_held() > routine_limit, "the routine consumer must pause for its lane's retries"
        assert urgent_held() <= urgent_limit, "the urgent consumer must read on"
    finally:
        await dispatcher.stop()


class ReplayPartition(Announcements):
    """One partition of commune.notify.replays holding `values` in order, served in batches of `BATCH`."""

    def __init__(self, tp: TopicPartition, values: list[bytes]) -> None:
        super().__init__(tp, "")
        self.values = values

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:  # type: ignore[override]
        await asyncio.sleep(0)
        if self.tp in self._paused or self.read >= len(self.values):
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        batch = [Replayed(self.read + i, v) for i, v in enumerate(self.values[self.read:self.read + BATCH])]
        self.read += len(batch)
        return {self.tp: batch}  # type: ignore[dict-item]


class Replayed:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key, self.headers, self.timestamp = offset, value, b"02269", [], 0


class SlowForRoutine:
    """A provider answering routine sends in 20 ms (a throttled gateway), emergencies at once."""

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def send(self, message: Message) -> Receipt:
        if not message.request.is_emergency:
            await asyncio.sleep(0.02)
        self.delivered.append(message.request.notification_id)
        return Receipt("m")

    async def close(self) -> None:
        pass


async def test_a_replayed_storm_warning_is_read_and_sent_before_the_routine_replays_given_up_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator replays a day of dead letters: 2,000 routine ones and, given up last, a storm warning, all for one
    commune. `notify-dlq replay` writes the storm warning's first, so the urgent consumer reads it in its first batch
    and it is sent before the routine replays (audit: written in offset order, it was read only once nearly every
    routine replay ahead of it was sent, the replay partition paused past 1.5 x max_pending)."""
    sent_dlq = "commune.dlq.notify"
    requests = [citizen_sms(f"replayed-{i}") for i in range(2_000)] + emergencies("storm-replayed")[:1]
    dead = [deadletters.bounded(r) for r in requests]
    at = [("dlq.reason", b"http_503"), ("dlq.attempts", b"40"), ("dlq.rejected.at", b"2025-11-03T05:00:00+00:00")]
    letters = [letter(0, n, value, at + omitted) for n, (value, omitted) in enumerate(dead)]
    written: list[bytes] = []

    async def visible(_conn: object, topics: list[str]) -> dict[str, int]:
        return {t: 6 for t in topics}

    async def replay_each(_conn: object, _ns: str, _client: str, _dlq: str, todo: list[NotifyLetter],
                          redrive: Callable[[NotifyLetter], tuple[str, bytes, bytes, object]],
                          *_: object) -> list[NotifyLetter]:
        written.extend(redrive(d)[1] for d in todo)  # in the order the command writes them
        return todo

    monkeypatch.setattr(notify_dlq, "partition_counts", visible)
    monkeypatch.setattr(notify_dlq, "replay_each", replay_each)
    await notify_dlq.replay(KafkaConnection(), "", letters, sent_dlq)
    urgent = replayed(letters[-1], sent_dlq)[0]

    settings, producer, provider = NotifySettings(max_pending=LIMIT), Producer(), SlowForRoutine()
    d = Dispatcher({ChannelKind.SMS: provider}, Ledger("ledger", producer), producer,  # type: ignore[arg-type]
                   Outputs("status", "dlq"), spawn=Tasks(), backoff=settings.backoff(),
                   quiet=QuietHours(time(0), time(0)), rates={"sms": 100_000.0}, segment_limit=3, routine_workers=4,
                   emergency_workers=1, clock=FixedClock(NOON))
    consumer = ReplayPartition(TopicPartition(Names("").replays, 0), written)
    records = Records(settings, Names(""), directory(), Registry(), producer, d,  # type: ignore[arg-type]
                      OffsetTracker(), Supervisor())  # type: ignore[arg-type]
    d.start()
    consuming = asyncio.create_task(records.consume(consumer, Pauses(consumer), "urgent"))  # type: ignore[arg-type]
    try:
        await eventually_async(lambda: urgent in provider.delivered, timeout=5, interval=0.01,
                               what="the replayed storm warning sent")
        assert provider.delivered.index(urgent) < BATCH, "sent after the routine replays ahead of it"
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await d.stop()
