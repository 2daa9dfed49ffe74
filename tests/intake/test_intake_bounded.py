"""intake's waits on the broker are bounded, with fakes at the client boundary (no broker): a transaction that
never finishes (an idempotent producer's sends stay pending while the broker is gone) ends the run on every path,
and SIGTERM ends the process meanwhile."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition

from services.common import kip447, runtime
from services.common.health import Health
from services.common.runtime import Supervisor, run_once, supervise
from services.intake.outputs import TransactionOutputs
from services.intake.settings import IntakeSettings
from services.intake.task import Task, TransactionStuck
from services.intake.worker import Fetched, IntakeWorker
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
TIMEOUT_MS = 1_000  # the least INTAKE_TRANSACTION_TIMEOUT_MS accepted
TP = TopicPartition("raw", 0)


class EndlessConsumer:
    """Returns a record at every fetch, as a consumer with a backlog fetched before the broker went away."""

    async def getmany(self, timeout_ms: int, max_records: int) -> Fetched:
        await asyncio.sleep(0)
        return {TP: ["record"]}  # type: ignore[list-item]

    async def stop(self) -> None:
        pass


class IdleProducer:
    async def stop(self) -> None:
        pass


class BrokerGone(IntakeWorker):
    """A worker whose transactions never finish (the broker went away with one in flight); every fetched batch
    fills the open transaction up to `batch_max_records`."""

    def __init__(self, settings: IntakeSettings, supervisor: Supervisor, fill: int) -> None:
        super().__init__(settings, supervisor)
        self.fill, self.begun = fill, 0

    async def start(self) -> None:
        self.consumer = EndlessConsumer()  # type: ignore[assignment]
        self.task = Task("intake-test", IdleProducer())  # type: ignore[arg-type]
        self.supervisor.health.set_ready(True, "assigned, restored")

    async def _validate(self, batch: Fetched) -> None:
        assert self.task is not None
        out = self.task.outputs({})
        out.records = self.fill

    async def _publish(self, task: Task, out: TransactionOutputs) -> None:
        self.begun += 1
        await asyncio.Future()  # never done: the broker does not come back during the test


def settings() -> IntakeSettings:
    return IntakeSettings(namespace="t", seal_personal_data=False, transaction_timeout_ms=TIMEOUT_MS,
                          batch_max_records=10)


@pytest.mark.parametrize("fill", [1, 10], ids=["room-left", "batch-full"])
async def test_a_transaction_that_never_finishes_ends_the_run_whether_or_not_the_batch_is_full(fill: int) -> None:
    """A transaction in flight past the transaction timeout ends the run with TransactionStuck (the runtime restarts
    it), also while the validated records waiting for it fill the batch and the worker fetches nothing more."""
    health, workers = Health("intake-test"), []

    async def worker(supervisor: Supervisor) -> None:
        workers.append(BrokerGone(settings(), supervisor, fill))
        await workers[-1].run()

    started = time.monotonic()
    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(run_once("intake-test", worker, asyncio.Event(), health), timeout=20 * TIMEOUT_MS / 1000)
    assert raised.value.subgroup(TransactionStuck) is not None
    assert time.monotonic() - started < 10 * TIMEOUT_MS / 1000
    assert workers[0].begun == 1


async def test_sigterm_with_a_full_batch_behind_a_stuck_transaction_ends_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop set while the batch is full and the transaction hangs: `supervise` returns within a bounded time
    (the transaction timeout, the final drain's and the clients' close) instead of waiting for the broker."""
    monkeypatch.setattr(runtime, "FIRST_BACKOFF_S", 0.05)
    health, stop, workers = Health("intake-test"), asyncio.Event(), []

    async def worker(supervisor: Supervisor) -> None:
        workers.append(BrokerGone(settings(), supervisor, 10))
        await workers[-1].run()

    supervising = asyncio.create_task(supervise("intake-test", worker, stop, health))
    await eventually_async(lambda: workers and workers[-1].begun, what="a transaction in flight")
    stop.set()
    done, _ = await asyncio.wait({supervising}, timeout=10 * TIMEOUT_MS / 1000)
    if not done:
        supervising.cancel()
    assert done, "the process did not stop while a transaction hung"
    await supervising
    assert not health.ready



class Rebalancing(IntakeWorker):
    """A worker fetching records of its partition 0 while partition 1 arrives and the broker goes away: reading
    partition 1's stable offsets never ends (aiokafka looks for the coordinator for ever)."""

    async def start(self) -> None:
        self.consumer = RebalancingConsumer(self)  # type: ignore[assignment]
        self.task = Task("intake-test", IdleProducer())  # type: ignore[arg-type]
        self.partitions = {"any": 1}

    async def _validate(self, batch: Fetched) -> None:
        pass


class RebalancingConsumer:
    def __init__(self, worker: IntakeWorker) -> None:
        self.worker, self.fetches = worker, 0

    async def getmany(self, timeout_ms: int, max_records: int) -> Fetched:
        self.fetches += 1
        if self.fetches == 2:
            await self.worker.assignment.assigned({TopicPartition(t, 1) for t in self.worker.topics.family_of})
        await asyncio.sleep(0.01)
        return {TP: ["record"]}  # type: ignore[list-item]

    def pause(self, *tps: TopicPartition) -> None:
        pass

    def resume(self, *tps: TopicPartition) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_sigterm_while_partitions_get_ready_against_a_lost_broker_ends_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop set while an assignment waits on the broker (stable offsets, restore): validation and the final drain
    do not wait for it, and `supervise` returns at once."""
    waiting = asyncio.Event()

    async def no_coordinator(*_: object, **__: object) -> dict[TopicPartition, int | None]:
        waiting.set()
        await asyncio.Future()
        return {}

    monkeypatch.setattr(kip447, "fetch_stable_offsets", no_coordinator)
    health, stop = Health("intake-test"), asyncio.Event()

    async def worker(supervisor: Supervisor) -> None:
        await Rebalancing(settings(), supervisor).run()

    supervising = asyncio.create_task(supervise("intake-test", worker, stop, health))
    await asyncio.wait_for(waiting.wait(), timeout=5)
    stop.set()
    done, _ = await asyncio.wait({supervising}, timeout=3)
    if not done:
        supervising.cancel()
    assert done, "the process did not stop while partitions got ready"
    await supervising
