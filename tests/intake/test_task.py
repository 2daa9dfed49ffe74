"""The worker's transaction stream (`services.intake.task.Task`) after a failed transaction, without a broker."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import ProducerFenced

from services.common import kip447
from services.intake import task as task_module
from services.intake.outputs import TransactionOutputs
from services.intake.task import Task, TransactionStuck

pytestmark = pytest.mark.unit


class Publisher:
    """Fails the first transaction with `failure`; counts every transaction begun."""

    def __init__(self, failure: Exception) -> None:
        self.failure, self.begun = failure, 0

    async def __call__(self, task: Task, out: TransactionOutputs) -> None:
        self.begun += 1
        if self.begun == 1:
            raise self.failure


def validated(task: Task) -> None:
    task.open = TransactionOutputs(None, {})  # type: ignore[arg-type]


async def test_no_transaction_begins_on_a_producer_fenced_by_a_newer_epoch() -> None:
    """A fenced producer (a timed-out transaction bumps the epoch) is never asked to begin another transaction: the
    drain of a revoke after the main loop collected the failure raises it again instead (aiokafka would assert)."""
    task, publish = Task("t", None), Publisher(ProducerFenced())  # type: ignore[arg-type]
    validated(task)
    assert task.start(publish, 10)
    await asyncio.wait({task.inflight})  # type: ignore[arg-type]
    validated(task)
    with pytest.raises(ProducerFenced):
        task.start(publish, 10)  # the main loop collects the failure
    with pytest.raises(ProducerFenced):
        await task.drain(publish, 10)  # the revoke callback, after it
    assert publish.begun == 1


async def test_a_transaction_refused_by_the_group_leaves_the_producer_usable() -> None:
    """KIP-447's refusal aborts the transaction only: once given up, the next transaction begins on the same
    producer."""
    task, publish = Task("t", None), Publisher(kip447.GroupFenced())  # type: ignore[arg-type]
    validated(task)
    task.start(publish, 10)
    validated(task)
    with pytest.raises(kip447.GroupFenced):
        await task.drain(publish, 10)
    task.cancel()
    validated(task)
    await task.drain(publish, 10)
    assert publish.begun == 2


class Answered:
    """A transaction whose answer comes `after_s` after it began: `failure` (the group's refusal), or success."""

    def __init__(self, after_s: float, failure: Exception | None = None) -> None:
        self.after_s, self.failure, self.begun = after_s, failure, 0

    async def __call__(self, task: Task, out: TransactionOutputs) -> None:
        self.begun += 1
        await asyncio.sleep(self.after_s)
        if self.failure is not None:
            raise self.failure


def stood_still(task: Task, seconds: float) -> None:
    """As if the process had been stopped (SIGSTOP) for `seconds` since its transaction began: the monotonic clock
    went on, the transaction's answer was not read."""
    task.started -= seconds


async def test_a_transaction_past_its_time_after_a_pause_is_given_its_answer_not_given_up() -> None:
    """A worker paused past its session timeout with a transaction in flight wakes, and the revoke's drain reads the
    transaction's answer (the group's refusal: the partitions moved on) instead of giving it up unread as stuck,
    which ended the run (the chaos matrix's intake-sigstop row restarted it)."""
    task, publish = Task("t", None), Answered(0.05, kip447.GroupFenced())  # type: ignore[arg-type]
    validated(task)
    assert task.start(publish, 15)
    stood_still(task, 12)
    with pytest.raises(kip447.GroupFenced):
        await task.drain(publish, 6)  # the revoke's drain: the session timeout


async def test_a_worker_stopped_during_the_drain_reads_the_answer_waiting_for_it() -> None:
    """The process stands still (SIGSTOP) once the revoke's drain began, past the drain's own time, while its
    transaction's answer arrives: on waking the drain reads that answer (the group's refusal) instead of giving it up
    unread as stuck at once, which restarted the run (audit)."""
    async def publish(_: Task, __: TransactionOutputs) -> None:
        await asyncio.sleep(0.1)  # the group's refusal arrives while the process stands still
        await asyncio.sleep(0.01)  # one more round trip once it wakes: the abort
        raise kip447.GroupFenced()

    task = Task("t", None)  # type: ignore[arg-type]
    validated(task)
    assert task.start(publish, 15)

    async def stop_the_process() -> None:
        await asyncio.sleep(0.02)
        time.sleep(0.4)  # noqa: ASYNC251 - the whole loop stands still, past the drain's 0.2 s and the answer's 0.1 s

    stopped = asyncio.create_task(stop_the_process())
    with pytest.raises(kip447.GroupFenced):
        await task.drain(publish, 0.2)
    await stopped


async def test_a_drain_not_stood_still_ends_at_its_time() -> None:
    """The grace is for a process that stood still: a commit slower than the drain's time, the loop running all along,
    is given up at that time, not a grace later (the revocation must end within the rebalance timeout; review)."""
    task, publish = Task("t", None), Answered(0.6)  # type: ignore[arg-type]
    validated(task)
    assert task.start(publish, 15)
    began = time.monotonic()
    with pytest.raises(TransactionStuck):
        await task.drain(publish, 0.2)
    assert time.monotonic() - began < 0.5


async def test_a_paused_transaction_that_commits_is_collected_by_the_main_loop() -> None:
    """The main loop's `collect` sees a transaction past its time: it is given `RESUMED_GRACE_S` from then, and its
    commit is taken, not raised as stuck."""
    task, publish = Task("t", None), Answered(0.05)  # type: ignore[arg-type]
    validated(task)
    task.start(publish, 15)
    stood_still(task, 20)
    task.collect(15)  # first seen past its time: not stuck yet
    await task.wait_inflight(15)
    task.collect(15)
    assert task.inflight is None and publish.begun == 1


async def test_a_transaction_that_never_answers_is_still_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grace is bounded: a transaction with no answer (a broker gone) is stuck `RESUMED_GRACE_S` after its time
    was seen gone, in the drain and in the main loop."""
    monkeypatch.setattr(task_module, "RESUMED_GRACE_S", 0.1, raising=False)
    for drained in (True, False):
        task, publish = Task("t", None), Answered(3600)  # type: ignore[arg-type]
        validated(task)
        task.start(publish, 15)
        stood_still(task, 20)
        began = time.monotonic()
        with pytest.raises(TransactionStuck):
            if drained:
                await task.drain(publish, 6)
            else:
                task.collect(15)
                await task.wait_inflight(15)
                task.collect(15)
        assert 0.09 <= time.monotonic() - began < 3
        task.cancel()
