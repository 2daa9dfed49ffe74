"""A client's stop is given a deadline: a stop that hangs (a producer's batches during an outage) does not hold the
process, runs on in the background, and its failure is logged by type, never left unretrieved."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import KafkaConnectionError
from structlog.testing import capture_logs

from services.common.closing import Abandoned, Unanswered, answered_within, close_all_within, close_within, stop_writer
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit


async def test_a_stop_that_finishes_in_time_is_true() -> None:
    """A clean stop returns True and logs nothing."""
    done: list[str] = []

    async def stop() -> None:
        await asyncio.sleep(0.01)
        done.append("stopped")

    with capture_logs() as logs:
        assert await close_within("svc", "producer", stop, timeout_s=5) is True
    assert done == ["stopped"] and logs == []


async def test_a_hanging_stop_is_given_up_after_its_deadline_and_runs_on() -> None:
    """A stop that never ends (the broker gone) returns False after the deadline; it keeps running, so a late finish
    still closes the client."""
    release = asyncio.Event()
    finished = asyncio.Event()

    async def stop() -> None:
        await release.wait()
        finished.set()

    with capture_logs() as logs:
        assert await close_within("svc", "producer", stop, timeout_s=0.05) is False
    assert [(e["event"], e["client"], e["error"]) for e in logs] == [("client.stop_failed", "producer", "TimeoutError")]
    release.set()
    await asyncio.wait_for(finished.wait(), timeout=5)


async def test_a_failing_stop_is_logged_by_type_and_a_cancelled_caller_still_cancels() -> None:
    """A KafkaError from the stop is False and logged by type; a caller cancelled while waiting is cancelled (the
    stop itself goes on)."""
    async def failing() -> None:
        raise KafkaConnectionError("broker 127.0.0.1:1 gone")

    with capture_logs() as logs:
        assert await close_within("svc", "consumer", failing, timeout_s=5) is False
    assert [(e["event"], e["error"]) for e in logs] == [("client.stop_failed", "KafkaConnectionError")]
    assert "127.0.0.1" not in str(logs)

    stopped = asyncio.Event()

    async def slow() -> None:
        await asyncio.sleep(0.1)
        stopped.set()

    caller = asyncio.create_task(close_within("svc", "producer", slow, timeout_s=5))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(stopped.wait(), timeout=5)


async def test_a_stop_that_ends_cancelled_by_itself_is_a_failed_stop_not_a_cancelled_caller() -> None:
    """A client's stop that ends with CancelledError of its own (aiokafka's consumer stop during an outage) is
    False and logged: the caller, whom nobody cancelled, goes on closing the next client. It was re-raised, so an
    orderly stop ended its worker as "cancelled from inside" (task.failed) and left the other clients unclosed."""
    async def cancelled_inside() -> None:
        raise asyncio.CancelledError

    with capture_logs() as logs:
        assert await close_within("svc", "consumer", cancelled_inside, timeout_s=5) is False
    assert [(e["event"], e["error"]) for e in logs] == [("client.stop_failed", "CancelledError")]


async def test_a_caller_cancelled_in_the_turn_its_stop_ends_cancelled_is_still_cancelled() -> None:
    """The stop ends cancelled by itself (aiokafka cancels its own futures) in the same turn the caller is cancelled:
    the caller is cancelled all the same (the review's race: it returned False, and a retry loop around it, the
    gateway's claims reader, went on for ever after SIGTERM)."""
    inner = asyncio.get_running_loop().create_future()

    async def stop() -> None:
        await inner

    caller = asyncio.create_task(close_within("svc", "consumer", stop, timeout_s=10))
    await asyncio.sleep(0.01)
    inner.cancel()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_clients_closed_together_wait_out_one_deadline_not_one_each() -> None:
    """Two consumers whose stops each end only once the other's has begun (each waits out the same group join) both
    stop cleanly within one deadline: closed one after the other, the first was given up at its deadline (notify's
    two consumers, 10 s each, term audit)."""
    begun = {"routine": asyncio.Event(), "urgent": asyncio.Event()}

    def stop_of(name: str, other: str) -> Callable[[], Awaitable[None]]:
        async def stop() -> None:
            begun[name].set()
            await begun[other].wait()
        return stop

    stops = [("routine", stop_of("routine", "urgent")), ("urgent", stop_of("urgent", "routine"))]
    assert await close_all_within("svc", stops, timeout_s=5) == [True, True]


async def _stubborn() -> None:
    """Work that outlives its first cancellation, as a transaction's abort waiting for a silent broker does."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(3600)


@pytest.mark.parametrize("asked", [False, True])
async def test_work_given_up_is_said_with_its_fate_and_cancelled_again_once_its_writer_stops(asked: bool) -> None:
    """`answered_within` names the step, and whether its commit was asked for (then it may have committed); the work
    given up outlives its first cancellation and `stop_writer` cancels it again after the producer's stop (the gateway
    kept one such task per erasure given up)."""
    abandoned: Abandoned = set()
    with pytest.raises(Unanswered) as raised:
        await answered_within(_stubborn(), "the step", 0.05, asked_to_commit=lambda: asked, abandoned=abandoned)
    fate = "its commit was asked for: it may have committed" if asked else "given up: a transaction commits whole"
    assert f"the step: no answer from the broker within 0.05 s ({fate}" in str(raised.value)
    [task] = abandoned
    await asyncio.sleep(0.05)
    assert not task.done(), "still waiting, as an abort on a silent broker does"
    stopped: list[bool] = []

    class Producer:
        async def stop(self) -> None:
            stopped.append(True)

    await stop_writer("svc", "writer", Producer(), abandoned)  # type: ignore[arg-type]
    await eventually_async(lambda: task.done(), timeout=2, what="the work given up, cancelled again")
    assert stopped == [True] and task.cancelled()
    await eventually_async(lambda: not abandoned, timeout=2, what="the work ended, no longer held")
