"""intake's assignment with fakes (no broker): the order pause -> stable committed offsets -> restore -> seek ->
resume, and a failed restore reported to the supervisor (aiokafka would swallow it) with the partitions left paused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common import kip447
from services.common.health import Health
from services.intake import assignment as assignment_module
from services.intake.settings import IntakeSettings
from services.intake.task import Task
from services.intake.validate import Topics
from services.intake.worker import IntakeWorker

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
        self.task: asyncio.Task[None] | None = None

    def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)

    def spawn(self, name: str, coro: Any) -> asyncio.Task[None]:
        """As `Supervisor.spawn`: a task whose failure is reported (and would end the run)."""
        async def watched() -> None:
            try:
                await coro
            except Exception as exc:
                self.failures.append(exc)
                raise
        self.task = asyncio.create_task(watched(), name=name)
        return self.task

    def spawn_if_running(self, name: str, coro: Any) -> asyncio.Task[None] | None:
        return self.spawn(name, coro)


def worker_with_fakes(journal: list[str], committed: dict[TopicPartition, int | None],
                      monkeypatch: pytest.MonkeyPatch, restore: Any) -> tuple[IntakeWorker, FakeSupervisor]:
    supervisor = FakeSupervisor()
    worker = IntakeWorker(IntakeSettings(namespace="t"), supervisor)  # type: ignore[arg-type]
    worker.consumer = FakeConsumer(journal, committed)  # type: ignore[assignment]
    worker.task = Task("intake-test", FakeProducer())  # type: ignore[arg-type]

    async def stable_offsets(consumer: Any, partitions: set[TopicPartition], timeout_s: float) -> dict[Any, Any]:
        journal.append("stable offsets")  # KIP-447: waits while another member's transaction holds them open
        return {tp: committed[tp] for tp in partitions}

    monkeypatch.setattr(kip447, "fetch_stable_offsets", stable_offsets)
    monkeypatch.setattr(assignment_module, "restore_seen", restore)
    return worker, supervisor


def assignment(*numbers: int) -> set[TopicPartition]:
    topics = IntakeSettings(namespace="t")
    return {TopicPartition(t, n) for t in Topics.of(topics.namespace).family_of for n in numbers}


async def test_stable_offsets_are_read_then_state_restored_then_partitions_resume(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """New partitions stay paused until their committed offsets were read stable (no transaction of an earlier
    owner open), their state restored (after: the changelog is written in the same transactions) and the offsets
    sought; a partition without a commit starts at 0."""
    journal: list[str] = []
    tps = assignment(1, 4)
    committed: dict[TopicPartition, int | None] = {tp: (None if tp.partition == 4 else 17) for tp in tps}

    async def restore(*_: Any, **__: Any) -> int:
        journal.append("restore")
        return 0

    worker, supervisor = worker_with_fakes(journal, committed, monkeypatch, restore)
    await worker.assignment.on_partitions_assigned(frozenset(tps))
    assert journal == ["pause"]  # the callback returns at once: the consumer keeps heartbeating meanwhile
    await supervisor.task
    assert journal[0] == "pause" and journal[-1] == "resume"
    assert journal.index("restore") > journal.index("stable offsets")
    consumer = worker.consumer
    assert isinstance(consumer, FakeConsumer) and not consumer.paused
    assert consumer.positions == {tp: 17 for tp in tps if tp.partition == 1}
    assert worker.task is not None
    assert worker.task.positions == {tp: (0 if tp.partition == 4 else 17) for tp in tps}
    assert supervisor.health.ready and not supervisor.failures


async def test_a_failed_restore_ends_the_run_and_consumes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore that raises is reported to the supervisor (the run ends) and re-raised; the partitions stay
    paused and the worker never says it is ready."""
    journal: list[str] = []
    tps = assignment(2)

    async def restore(*_: Any, **__: Any) -> int:
        raise OSError("changelog unreadable")

    worker, supervisor = worker_with_fakes(journal, dict.fromkeys(tps, 5), monkeypatch, restore)
    await worker.assignment.on_partitions_assigned(frozenset(tps))
    with pytest.raises(OSError, match="changelog unreadable"):
        await supervisor.task
    assert [type(e) for e in supervisor.failures] == [OSError]
    consumer = worker.consumer
    assert isinstance(consumer, FakeConsumer) and consumer.paused == tps
    assert "resume" not in journal and worker.task is not None and not worker.task.positions
    assert not supervisor.health.ready
