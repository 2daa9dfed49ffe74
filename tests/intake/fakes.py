"""intake's transactional producer in memory: record batches that keep what they are given, sends whose futures fail
when the test says so, and a transaction that records whether it committed or aborted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition


class Batch:
    """aiokafka's `BatchBuilder` as intake uses it: appends are kept, never full."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []

    def append(self, *, timestamp: int | None, key: bytes, value: bytes, headers: Any) -> Batch:
        self.records.append((key, value, list(headers)))
        return self

    def close(self) -> None:
        pass


class Producer:
    """A transactional producer: each send's future succeeds, or fails with `send_fails` (single sends only)."""

    def __init__(self, send_fails: Exception | None = None) -> None:
        self.send_fails = send_fails
        self.ended: list[str] = []
        """How each transaction ended: "commit" or "abort"."""
        self.offsets: list[dict[TopicPartition, int]] = []
        self._txn_manager = SimpleNamespace()  # where kip447 leaves the group's metadata for the offset commit

    def create_batch(self) -> Batch:
        return Batch()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            self.ended.append("abort")
            raise
        self.ended.append("commit")

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        return _future(None)

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None, headers: Any,
                   partition: int | None) -> asyncio.Future[None]:
        return _future(self.send_fails)

    async def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        self.offsets.append(dict(offsets))


def _future(failure: Exception | None) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
    return future
