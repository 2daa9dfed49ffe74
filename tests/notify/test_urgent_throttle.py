"""The urgent consumer (announcements, where emergencies arrive) pauses too, once the emergency jobs held pass the
limit, or the routine ones `URGENT_HEADROOM` times it: it used to never pause, so a flood of announcements behind a
slow provider filled memory (audit: 59,864 queued jobs, 198 MB); and it does not pause for the routine lane's
retries (review). Real `Records.consume` and `Dispatcher`; a consumer serving batches of canonical announcements;
a provider that never answers, or one that is down."""

from __future__ import annotations

import asyncio
from collections.abc import Set
from datetime import time

import pytest
from aiokafka import TopicPartition

from schemas import wire
from services.notify.channels.base import DeliveryError, Receipt
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
from tests.notify.fakes import Tasks
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


class Announcements:
    """Batches of `BATCH` announcements of one category on one partition, for as long as it is not paused."""

    def __init__(self, tp: TopicPartition, category: str) -> None:
        self.tp, self.category, self.read, self._paused = tp, category, 0, set[TopicPartition]()

    def assignment(self) -> Set[TopicPartition]:
        return frozenset({self.tp})

    def paused(self) -> Set[TopicPartition]:
        return frozenset(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

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
            await records.handle(tp, Record(offset, "general"))  # type: ignore[arg-type]
            offset += 1
        await eventually_async(lambda: dispatcher.routine.queue.qsize() == 0, timeout=30,
                               what="the routine jobs tried once and waiting for their retries")
        routine_held, routine_limit = records.throttle("routine")
        urgent_held, urgent_limit = records.throttle("urgent")
        assert routine_held() > routine_limit, "the routine consumer must pause for its lane's retries"
        assert urgent_held() <= urgent_limit, "the urgent consumer must read on"
    finally:
        await dispatcher.stop()
