"""The worker's transaction stream (`services.intake.task.Task`) after a failed transaction, without a broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import ProducerFenced

from services.common import kip447
from services.intake.outputs import TransactionOutputs
from services.intake.task import Task

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
