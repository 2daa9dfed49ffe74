"""Waits on the broker in the shared runtime end within their deadline, with fakes at the client boundary (no
broker): aiokafka itself looks for a group coordinator, or fetches a partition, for as long as the broker is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common import changelog, kip447

pytestmark = pytest.mark.unit
TP = TopicPartition("changelog", 0)


class CoordinatorNeverFound:
    group_id, coordinator_id = "g", None

    async def ensure_coordinator_known(self) -> None:
        await asyncio.Future()  # aiokafka retries the lookup for ever while no broker answers


class GroupConsumer:
    _coordinator, _client = CoordinatorNeverFound(), None


async def test_stable_offsets_give_up_at_the_deadline_while_no_coordinator_is_found() -> None:
    """`fetch_stable_offsets` raises UnstableOffsets (a Kafka error: the run restarts) after `timeout_s` also while
    aiokafka waits for a coordinator, not only while the offsets are unstable."""
    with pytest.raises(kip447.UnstableOffsets):
        await asyncio.wait_for(kip447.fetch_stable_offsets(GroupConsumer(), [TP], timeout_s=0.2),  # type: ignore[arg-type]
                               timeout=5)


class ReaderCutOff:
    """A changelog reader whose broker went away after the end offsets were read: fetches return nothing."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.stopped = False

    async def start(self) -> None:
        pass

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        pass

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 100)

    async def position(self, tp: TopicPartition) -> int:
        return 0

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return None  # no fetch answered

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return None

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        await asyncio.sleep(timeout_ms / 1000 / 10)
        return {}

    async def stop(self) -> None:
        self.stopped = True


async def test_a_restore_that_reads_nothing_for_stall_s_raises_a_kafka_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`read_to_end` with `stall_s` raises RestoreStalled (a Kafka error) once nothing was read for that long, and
    closes its reader; without it the restore would wait for the broker however long it is gone."""
    readers: list[ReaderCutOff] = []
    monkeypatch.setattr(changelog.clients, "consumer", lambda *a, **k: readers.append(ReaderCutOff()) or readers[-1])
    with pytest.raises(changelog.RestoreStalled):
        await asyncio.wait_for(changelog.read_to_end(None, "changelog", [0], lambda *_: None,  # type: ignore[arg-type]
                                                     client_id="test", stall_s=0.3), timeout=5)
    assert readers[0].stopped
