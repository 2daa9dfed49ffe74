"""A changelog writer closed while a write is under way: the write's outcome is read, whatever it ends with.

The chaos row `metrics-sigstop` logged "Task exception was never retrieved" (ProducerFenced) at ERROR: the run of
the woken worker ends (its stall watch: `WorkerStalled`), its task group cancels the caller of a write
(`PartitionWriter._write`), which leaves the write's own task (`metrics:write:pN`) running. Its commit, or the abort
that `close` cancelling it starts, waits for the broker; the partition's new owner's fence answers (aiokafka's
sender: `EndTxn` refused, ProducerFenced, `TransactionManager.fatal_error`), and aiokafka fails the commit or abort
with it: the write's task ends with that error, which nobody awaited any more."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced
from structlog.testing import capture_logs

from schemas.wire import KafkaRecord
from services.metrics.writers import PartitionWriter

pytestmark = pytest.mark.unit


class FencedOnStop:
    """A transactional producer whose sends wait (the broker does not answer yet) and whose stop meets the fence:
    the transaction under way, committing or aborting, fails with the stop's ProducerFenced, as aiokafka's does
    (`Sender._fail_all`: `TransactionManager.fatal_error`)."""

    def __init__(self, sends_wait: bool) -> None:
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sending, self.sends_wait = asyncio.Event(), sends_wait

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            await asyncio.shield(self.ended)  # the abort waits for the broker
            raise
        await asyncio.shield(self.ended)

    async def send(self, topic: str, value: Any, key: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sending.set()
        if self.sends_wait:
            await asyncio.Event().wait()
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent

    def fence(self) -> ProducerFenced:
        fenced = ProducerFenced()
        if not self.ended.done():
            self.ended.set_exception(fenced)
        return fenced

    async def stop(self) -> None:
        raise self.fence()


@pytest.mark.parametrize("fenced_while", ["committing", "aborting"])
async def test_a_write_under_way_when_its_writer_closes_leaves_no_error_unread(fenced_while: str) -> None:
    """Committing: the sender dies fenced before the writer closes (the chaos run's); aborting: `close` cancels
    the write while it sends, and the stop meets the fence."""
    loop = asyncio.get_running_loop()
    unread: list[dict[str, Any]] = []
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unread.append(context))
    try:
        producer = FencedOnStop(sends_wait=fenced_while == "aborting")
        writer = PartitionWriter(producer, 3, "changelog", "snapshots", timeout_s=30)  # type: ignore[arg-type]
        caller = asyncio.create_task(writer.write_snapshots([KafkaRecord(key=b"k", value=b"v", headers=[])]))
        await producer.sending.wait()
        with capture_logs() as logs:
            caller.cancel()  # the run ends: its task group cancels the write's caller
            with suppress(asyncio.CancelledError):
                await caller
            if fenced_while == "committing":  # the sender dies fenced (EndTxn refused): the commit fails with it
                producer.fence()
                assert writer._inflight is not None
                await asyncio.wait({writer._inflight})
            await writer.close()
            write = writer._inflight
            assert write is not None
            await asyncio.wait({write})
            await asyncio.sleep(0)  # its done callbacks
        assert not write.cancelled()  # the commit or abort failed fenced (replacing close's cancellation)
        assert {"event": "metrics.write_abandoned", "partition": 3, "error": "ProducerFenced",
                "log_level": "info"} in logs  # said, by type, not left to asyncio's ERROR at exit
        del write, writer, caller, producer
        gc.collect()
        assert [c["message"] for c in unread] == []
    finally:
        loop.set_exception_handler(handler)
