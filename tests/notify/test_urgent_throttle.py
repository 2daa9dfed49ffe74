"""The urgent consumer (announcements, where emergencies arrive) pauses too, once the dispatcher holds
`URGENT_HEADROOM` times the routine limit: it used to never pause, so a flood of announcements behind a slow
provider filled memory (audit: 59,864 queued jobs, 198 MB). Real `Records.consume` and `Dispatcher`; a consumer
serving batches of canonical announcements; a provider that never answers."""

from __future__ import annotations

import asyncio
from collections.abc import Set
from datetime import time

import pytest
from aiokafka import TopicPartition

from schemas import wire
from services.notify.channels.base import Receipt
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


@pytest.mark.parametrize("category", ["general", "storm"])  # routine-lane announcements, emergencies
async def test_a_flood_of_announcements_pauses_the_urgent_consumer(category: str) -> None:
    settings, names, producer = NotifySettings(max_pending=LIMIT), Names(""), Producer()
    dispatcher = Dispatcher({k: Unanswering() for k in ("sms", "email", "zalo", "webhook")},  # type: ignore[misc]
                            Ledger("ledger", producer), producer, Outputs("status", "dlq"),  # type: ignore[arg-type]
                            spawn=Tasks(), backoff=settings.backoff(), quiet=QuietHours(time(0), time(0)),
                            rates=settings.rate_per_s, segment_limit=3, routine_workers=settings.routine_workers,
                            emergency_workers=settings.emergency_workers)
    dispatcher.start()
    consumer = Announcements(TopicPartition(names.announcement, 0), category)
    records = Records(settings, names, directory(), Registry(), producer, dispatcher,  # type: ignore[arg-type]
                      OffsetTracker(), Supervisor())  # type: ignore[arg-type]
    lane: Lane = "urgent"
    consuming = asyncio.create_task(records.consume(consumer, Pauses(consumer), lane))  # type: ignore[arg-type]
    try:
        await eventually_async(lambda: consumer.paused() or consumer.read >= 100 * LIMIT, timeout=30)
        assert consumer.paused(), f"read {consumer.read} announcements, never paused"
        assert URGENT_HEADROOM * LIMIT < dispatcher.backlog <= URGENT_HEADROOM * LIMIT + 2 * BATCH
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await dispatcher.stop()
