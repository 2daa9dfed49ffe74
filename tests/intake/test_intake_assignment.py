"""intake's assignment with fakes (no broker): the order fence -> restore -> committed offsets -> resume, and a
failed restore reported to the supervisor (aiokafka would swallow it) with the partitions left paused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common.health import Health
from services.intake import worker as worker_module
from services.intake.settings import IntakeSettings
from services.intake.task import Task
from services.intake.worker import IntakeWorker, _Rebalance

pytestmark = pytest.mark.unit


class FakeConsumer:
    def __init__(self, journal: list[str], committed: dict[TopicPartition, int | None]) -> None:
        self.journal, self._committed = journal, committed
        self.paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)
        self.journal.append("pause")

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)
        self.journal.append("resume")

    async def committed(self, tp: TopicPartition) -> int | None:
        self.journal.append("committed")
        return self._committed[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset


class FakeProducer:
    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))


class FakeSupervisor:
    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.health = Health("intake-test")
        self.stop = asyncio.Event()

    def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)


def worker_with_fakes(journal: list[str], committed: dict[TopicPartition, int | None],
                      monkeypatch: pytest.MonkeyPatch, restore: Any) -> tuple[IntakeWorker, FakeSupervisor]:
    supervisor = FakeSupervisor()
    worker = IntakeWorker(IntakeSettings(namespace="t"), supervisor)  # type: ignore[arg-type]
    worker.consumer = FakeConsumer(journal, committed)  # type: ignore[assignment]

    async def open_task(number: int) -> None:
        journal.append(f"fence p{number}")
        worker.tasks[number] = Task(number, FakeProducer())  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "_open_task", open_task)
    monkeypatch.setattr(worker_module, "restore_seen", restore)
    return worker, supervisor


def assignment(*numbers: int) -> set[TopicPartition]:
    topics = IntakeSettings(namespace="t")
    return {TopicPartition(t, n) for t in worker_module.Topics.of(topics.namespace).family_of for n in numbers}


async def test_offsets_are_read_after_the_fence_and_restore_then_partitions_resume(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """New partitions stay paused until their producer fenced the previous owner, their state was restored and
    their committed offsets (read after the fence) were sought; a partition without a commit starts at 0."""
    journal: list[str] = []
    tps = assignment(1, 4)
    committed: dict[TopicPartition, int | None] = {tp: (None if tp.partition == 4 else 17) for tp in tps}

    async def restore(*_: Any) -> int:
        journal.append("restore")
        return 0

    worker, supervisor = worker_with_fakes(journal, committed, monkeypatch, restore)
    await _Rebalance(worker).on_partitions_assigned(frozenset(tps))
    assert journal[0] == "pause" and journal[-1] == "resume"
    assert journal.index("restore") > max(journal.index("fence p1"), journal.index("fence p4"))
    assert journal.index("committed") > journal.index("restore")
    consumer = worker.consumer
    assert isinstance(consumer, FakeConsumer) and not consumer.paused
    assert consumer.positions == {tp: 17 for tp in tps if tp.partition == 1}
    assert worker.tasks[1].positions == {tp: 17 for tp in tps if tp.partition == 1}
    assert worker.tasks[4].positions == {tp: 0 for tp in tps if tp.partition == 4}
    assert supervisor.health.ready and not supervisor.failures


async def test_a_failed_restore_ends_the_run_and_consumes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore that raises is reported to the supervisor (the run ends) and re-raised; the partitions stay
    paused and the worker never says it is ready."""
    journal: list[str] = []
    tps = assignment(2)

    async def restore(*_: Any) -> int:
        raise OSError("changelog unreadable")

    worker, supervisor = worker_with_fakes(journal, dict.fromkeys(tps, 5), monkeypatch, restore)
    with pytest.raises(OSError, match="changelog unreadable"):
        await _Rebalance(worker).on_partitions_assigned(frozenset(tps))
    assert [type(e) for e in supervisor.failures] == [OSError]
    consumer = worker.consumer
    assert isinstance(consumer, FakeConsumer) and consumer.paused == tps
    assert "resume" not in journal and "committed" not in journal
    assert not supervisor.health.ready
