"""notify's ledger catch-up ends within its bound whatever the tail does, and ends the run, not the process: a tail
whose positions never come (aiokafka's `position` waits for ever while a partition has no leader) raises
`LedgerBehind` after `catch_up_s`, and `LedgerBehind` is a Kafka error, which `supervise` restarts (runtime audit
findings 3 and 4: the catch-up waited for ever, no provider call, no restart; and once raised, it ended the
process, exit 1, in an outage)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.notify.ledger_feed import LedgerBehind, LedgerFeed

pytestmark = pytest.mark.unit


class TailWithoutPosition:
    """The ledger tail after `seek_to_beginning` of a partition whose leader is unavailable."""

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 100)

    async def position(self, tp: TopicPartition) -> int:
        await asyncio.Future()  # aiokafka: `while True: await wait(..., timeout=request_timeout)` until valid
        return 0


async def test_a_catch_up_whose_positions_never_come_ends_within_its_bound() -> None:
    feed = LedgerFeed(None, SimpleNamespace(topic="ledger"), catch_up_s=0.3)  # type: ignore[arg-type]
    feed._consumer = TailWithoutPosition()  # type: ignore[assignment]
    started = time.monotonic()
    with pytest.raises(LedgerBehind):
        await asyncio.wait_for(feed.catch_up([0]), timeout=5)
    assert time.monotonic() - started < 2


def test_ledger_behind_restarts_the_run() -> None:
    assert issubclass(LedgerBehind, KafkaError)
