"""A restore's wait for a transaction open at a partition's end, timed against wall-clock steps (no broker)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from services.common import changelog

pytestmark = pytest.mark.unit

TP = TopicPartition("t", 0)


class Clocks:
    """The wall clock (stepped once, after the first fetch) and the steady one, as `changelog` reads them."""

    def __init__(self, step_s: float) -> None:
        self.wall, self.steady, self.step_s = 1_800_000_000.0, 100.0, step_s

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.steady

    def perf_counter(self) -> float:
        return self.steady


class OpenAtTheEnd:
    """A reader standing at the last stable offset below the end: a transaction is open there and stays open; each
    fetch answers empty after half a second, stamped with the wall clock as aiokafka stamps it."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks, self.fetches, self.polled = clocks, 0, None

    def assign(self, tps: list[TopicPartition]) -> None: ...

    async def seek_to_beginning(self, *tps: TopicPartition) -> None: ...

    async def position(self, tp: TopicPartition) -> int:
        return 3

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        self.fetches += 1
        assert self.fetches < 1000, "never settled"
        self.clocks.wall += 0.5 + (self.clocks.step_s if self.fetches == 1 else 0.0)
        self.clocks.steady += 0.5
        self.polled = int(self.clocks.wall * 1000)
        return {}

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return 3

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self.polled


@pytest.mark.parametrize("step_s", [86_400.0, -3_600.0, 0.0])
def test_an_open_transaction_is_waited_for_settle_s_whatever_the_wall_clock_does(
        monkeypatch: pytest.MonkeyPatch, step_s: float) -> None:
    """The wall clock stepped a day ahead or an hour back mid-restore: the transaction open at the end is given up
    after `settle_s` on the steady clock, not at once (ahead: a commit whose markers were on their way was left out)
    nor an hour later (back: the restore stalled and the run ended)."""
    clocks = Clocks(step_s)
    monkeypatch.setattr(changelog, "time", clocks)
    reader, ends = OpenAtTheEnd(clocks), {}
    started = clocks.steady
    asyncio.run(changelog._read(reader, [TP], {TP: 5}, None, lambda p, r: None, 100, ends,  # type: ignore[arg-type]
                                lambda: None, changelog.SETTLE_S))
    assert ends == {0: 3}
    assert changelog.SETTLE_S <= clocks.steady - started <= changelog.SETTLE_S + 1.0
