"""A transaction that ended under its sends (aborted by the broker while the process was paused, the producer
fenced) is a Kafka error the runtime restarts from, not aiokafka's plain `IllegalOperation` that crashed intake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalOperation, KafkaError

from services.common import transactions
from services.common.transactions import TransactionLost

pytestmark = pytest.mark.unit


class EndedUnderUs:
    """A producer whose transaction is aborted under its sends, as aiokafka's is after the broker's timeout."""

    def __init__(self) -> None:
        self.exited_with: BaseException | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException as exc:
            self.exited_with = exc
            raise

    async def send(self, topic: str, value: bytes) -> None:
        raise IllegalOperation("Can't send messages while not in transaction")


def test_illegal_operation_inside_a_transaction_is_raised_as_transaction_lost() -> None:
    producer = EndedUnderUs()

    async def publish() -> None:
        async with transactions.transaction(cast(AIOKafkaProducer, producer)):
            await producer.send("t", b"v")

    with pytest.raises(TransactionLost) as raised:
        asyncio.run(publish())
    assert isinstance(raised.value, KafkaError)  # what runtime.supervise restarts a run on
    assert isinstance(producer.exited_with, IllegalOperation)  # aiokafka's context saw it (and aborts)


def test_other_failures_pass_through_unchanged() -> None:
    async def publish() -> None:
        async with transactions.transaction(cast(Any, EndedUnderUs())):
            raise ValueError("not ours to rename")

    with pytest.raises(ValueError, match="not ours"):
        asyncio.run(publish())
