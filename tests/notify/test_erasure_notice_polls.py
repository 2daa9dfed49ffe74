"""How long an erasure notice sender goes between two polls (ADR 0035): under the consumer's `max.poll.interval.ms`
however slow the subscriber and however many notices wait, else the group drops the sender and the notice moves."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from services.common.settings import KafkaConnection
from services.notify import metrics
from services.notify.channels.base import DeliveryError
from services.notify.erasures import MAX_POLL_INTERVAL_MS, NoticeSender
from services.notify.offsets import COMMIT_TIMEOUT_S
from services.notify.policy import Backoff
from tests.notify.test_erasure_notices import NOTICE, _subscriber

pytestmark = pytest.mark.unit
TP = TopicPartition("t", 0)


class Backlog:
    """The notice consumer as aiokafka behaves: a fetch returns up to `max_records` records (notify's
    `max_poll_records`, 50, when not given) and moves the position past them, a seek moves it back; each fetch's time
    on `now` and each commit are kept."""

    def __init__(self, count: int, now: list[float]) -> None:
        self.notices = [NOTICE.model_copy(update={"erasure_id": f"e-{i}"}).model_dump_json().encode()
                        for i in range(count)]
        self.now, self.position = now, 0
        self.polls: list[float] = []
        self.commits: list[int] = []

    async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.polls.append(self.now[0])
        first = self.position
        batch = self.notices[first:first + (max_records or 50)]
        self.position += len(batch)
        return {TP: [Record(v, first + i) for i, v in enumerate(batch)]} if batch else {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.position = offset

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets[TP].offset)


class Record:
    def __init__(self, value: bytes, offset: int) -> None:
        self.value, self.offset = value, offset


@pytest.mark.parametrize("call_s", [6.5, 40.0, 149.0])
async def test_a_backlog_of_notices_to_a_slow_subscriber_is_told_within_the_poll_interval(call_s: float) -> None:
    """120 notices wait for a subscriber whose every call takes `call_s` (within NOTIFY_PROVIDER_TIMEOUT_S) and
    which refuses one once (its 100th call): each is told once, in order, and the sender polls again within half of
    `max.poll.interval.ms` (plus a commit's limit) every time. It told a whole fetch of 50 before polling again: from
    ~6 s a call that outlasted the interval, the group dropped the sender and the notices went to another worker."""
    now: list[float] = [0.0]
    sent: list[str] = []
    calls = 0

    class Slow:
        async def send(self, message: Any) -> None:
            nonlocal calls
            calls += 1
            now[0] += call_s
            if calls == 100:
                raise DeliveryError("http_503")
            sent.append(orjson.loads(message.request.payload or "")["id"])

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    backlog = Backlog(120, now)
    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", _subscriber("prov-08"),
                          Slow(), Backoff(base_s=900, cap_s=900), 10_000, 3_000,  # type: ignore[arg-type]
                          clock=lambda: now[0], sleep=sleep)
    for _ in range(400):
        await sender.poll(backlog)  # type: ignore[arg-type]
        if backlog.commits[-1:] == [120]:
            break
    assert sent == [f"e-{i}" for i in range(120)] and backlog.commits == list(range(1, 121))
    gaps = [b - a for a, b in zip(backlog.polls, backlog.polls[1:], strict=False)]
    assert max(gaps) <= sender.longest_wait_s + COMMIT_TIMEOUT_S < MAX_POLL_INTERVAL_MS / 1000, max(gaps)


async def test_a_call_still_under_way_at_the_share_of_the_poll_interval_is_cut_and_the_notice_waits() -> None:
    """A subscriber that holds the call open past half of `max.poll.interval.ms` (NOTIFY_PROVIDER_TIMEOUT_S set above
    it): the call is cut there, the notice counted as waiting and fetched again. The call ran as long as the provider
    timeout allowed, so one slow call alone could outlast the interval. Scaled down: an interval of 0.2 s."""
    class Hangs:
        async def send(self, message: Any) -> None:
            await asyncio.sleep(3600)

    backlog = Backlog(1, [0.0])
    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", _subscriber("prov-08"),
                          Hangs(), Backoff(base_s=0.001, cap_s=0.001), 10_000, 3_000,  # type: ignore[arg-type]
                          max_poll_interval_ms=200)
    async with asyncio.timeout(10):
        await sender.poll(backlog)  # type: ignore[arg-type]
    assert (backlog.position, backlog.commits, sender.waiting, sender.attempts) == (0, [], TP, 1)
    assert metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get() == 1
