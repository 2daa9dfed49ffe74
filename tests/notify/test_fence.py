"""The provider-call fence of a revocation and of a run's end: a drain that times out is seen (logged and counted),
not silent; the end of a run starts no call and waits for those under way."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from functools import partial
from types import SimpleNamespace

import pytest
import structlog
from aiokafka import TopicPartition

from services.common import clients
from services.common.health import Health
from services.common.stall import StallWatch
from services.notify import metrics
from services.notify.app import NotifyApp, _consumer_of
from services.notify.jobs import Revoked
from services.notify.offsets import COMMIT_TIMEOUT_S
from services.notify.rebalance import Fence, Readiness, known_members
from services.notify.settings import NotifySettings

pytestmark = pytest.mark.unit


def _fence() -> Fence:
    readiness = Readiness(Health("notify"), ("routine",))
    readiness.assigned("routine")
    return Fence(readiness, StallWatch(60))


def test_a_drain_that_outlasts_its_timeout_is_logged_and_counted() -> None:
    fence = _fence()
    before = metrics.DRAIN_TIMEOUTS._value.get()

    async def scenario() -> None:
        await fence.enter()  # a provider call under way that does not finish in time
        await fence.drained(0.05)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert metrics.DRAIN_TIMEOUTS._value.get() == before + 1
    assert [(e["event"], e["calls_under_way"]) for e in logs] == [("notify.drain_timeout", 1)]


def test_a_drain_that_completes_is_neither() -> None:
    fence = _fence()
    before = metrics.DRAIN_TIMEOUTS._value.get()

    async def scenario() -> None:
        await fence.enter()
        asyncio.get_running_loop().call_later(0.01, fence.leave)
        await fence.drained(5)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert metrics.DRAIN_TIMEOUTS._value.get() == before and logs == []


ROUTINE, URGENT = TopicPartition("ns.commune.events.dossier", 3), TopicPartition("ns.commune.events.announcement", 3)


def _two() -> tuple[Readiness, Fence]:
    """Notify's two consumers, each assigned; the fence knows which reads a partition (`app._consumer_of`)."""
    readiness = Readiness(Health("notify"), ("routine", "urgent"))
    readiness.assigned("routine")
    readiness.assigned("urgent")
    consumer_of = partial(_consumer_of, {ROUTINE.topic}, {URGENT.topic})
    return readiness, Fence(readiness, StallWatch(60), consumer_of)


async def _entered(fence: Fence, source: object) -> bool:
    """Whether a call for a job from `source` gets through the fence within 50 ms (and leaves it at once)."""
    try:
        async with asyncio.timeout(0.05):
            await fence.enter(source)
    except TimeoutError:
        return False
    fence.leave(source)
    return True


async def test_a_call_waits_for_the_consumer_its_job_came_from_only() -> None:
    """The routine consumer restoring its ledger (a long outage's parked requests: minutes) held every provider call,
    the urgent consumer's storm warnings too, though that consumer was assigned and caught up: one fence for both.
    Now a call waits for its own consumer; a job of no known partition still waits for both."""
    readiness, fence = _two()
    readiness.rebalancing("routine")
    assert await _entered(fence, URGENT)
    assert not await _entered(fence, ROUTINE) and not await _entered(fence, None)
    readiness.assigned("routine")
    readiness.rebalancing("urgent")
    assert await _entered(fence, ROUTINE) and not await _entered(fence, URGENT)
    readiness.assigned("urgent")
    assert await _entered(fence, URGENT) and await _entered(fence, None)


async def test_a_call_waits_while_its_group_may_have_moved_on_without_it() -> None:
    """chaos notify-partition: a worker cut off from the broker past its session, once healed, called providers for
    records a fetch had brought just before the cut, of partitions the group had given its other worker meanwhile (2
    to 10 requests a run, every run), before its heartbeat was answered (no member) and long before the revocation.
    Now a call of a consumer's jobs waits while its group has not answered it as a member for `heard_limit_s`, or has
    answered that it is none; a call already inside is revoked at its next check; the other consumer's calls go on;
    once the group answers it as a member again, the held call goes."""
    now = [100.0]
    coordinators = {name: SimpleNamespace(group_id="g", generation=4, member_id=f"m-{name}", _commune_heard_at=99.0)
                    for name in ("routine", "urgent")}
    consumers = {name: SimpleNamespace(_coordinator=c) for name, c in coordinators.items()}
    readiness = Readiness(Health("notify"), ("routine", "urgent"))
    readiness.assigned("routine")
    readiness.assigned("urgent")
    member = known_members(consumers, heard_limit_s=4.0, clock=lambda: now[0])  # type: ignore[arg-type]
    fence = Fence(readiness, StallWatch(60), partial(_consumer_of, {ROUTINE.topic}, {URGENT.topic}), member)
    assert await _entered(fence, ROUTINE) and await _entered(fence, URGENT)
    coordinators["urgent"]._commune_heard_at = 104.0  # the urgent consumer's heartbeats are answered, not the other's
    now[0] = 104.5  # cut off: the routine consumer's heartbeat waits out its request timeout
    assert not await _entered(fence, ROUTINE) and not await _entered(fence, None)
    assert await _entered(fence, URGENT)
    with pytest.raises(Revoked):
        fence.check(ROUTINE)
    held = asyncio.ensure_future(fence.enter(ROUTINE))
    await asyncio.sleep(0.05)
    coordinators["routine"].generation, coordinators["routine"].member_id = -1, ""  # healed: "no member"
    coordinators["routine"]._commune_heard_at = 104.6
    await asyncio.sleep(0.25)
    assert not held.done()
    coordinators["routine"].generation, coordinators["routine"].member_id = 5, "m-routine-2"  # rejoined
    async with asyncio.timeout(1):
        await held
    fence.leave(ROUTINE)
    fence.check(ROUTINE)


async def test_a_revocation_drains_its_own_consumers_calls_not_the_others() -> None:
    """A revocation waits for the calls of its consumer's jobs (and of jobs of no known partition) before it commits;
    the other consumer's calls go on (it still owns its partitions) and do not hold it to its drain timeout."""
    readiness, fence = _two()
    before = metrics.DRAIN_TIMEOUTS._value.get()
    await fence.enter(URGENT)  # a storm warning's call under way, and more to come
    await fence.enter(ROUTINE)
    readiness.rebalancing("routine")
    asyncio.get_running_loop().call_later(0.02, fence.leave, ROUTINE)
    async with asyncio.timeout(1):
        await fence.drained(5, "routine")
    assert metrics.DRAIN_TIMEOUTS._value.get() == before
    await fence.drained(0.05, "urgent")  # the urgent call is still under way: that drain times out, seen
    assert metrics.DRAIN_TIMEOUTS._value.get() == before + 1
    fence.leave(URGENT)
    await fence.drained(0.05)  # nothing under way
    assert metrics.DRAIN_TIMEOUTS._value.get() == before + 1


def test_each_input_topic_belongs_to_one_consumer() -> None:
    """The app's map from a job's partition to the consumer reading it: anything else (a released deferral without
    a partition, a tool's job) waits for both."""
    assert (_consumer_of({"d"}, {"a"}, TopicPartition("d", 0)), _consumer_of({"d"}, {"a"}, TopicPartition("a", 1)),
            _consumer_of({"d"}, {"a"}, TopicPartition("x", 0)), _consumer_of({"d"}, {"a"}, None)) == (
        "routine", "urgent", None, None)


class _Consumer:
    """What `NotifyApp._consumer` asks of the client it builds, nothing started."""

    def __init__(self, *topics: str, **options: object) -> None:
        self.options = options

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def subscribe(self, topics: list[str], listener: object) -> None:
        return None


async def test_the_group_waits_for_a_revocation_that_drains_then_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's rebalance timeout defaults to the session timeout (10 s), shorter than a revocation's drain (15 s)
    and commit (5 s): a worker still draining was left out of the new generation, its partitions handed to another
    worker before the calls it drained reached the ledger. Notify's consumers ask for the whole of it."""
    s = NotifySettings(session_timeout_ms=10_000, heartbeat_interval_ms=3_000, drain_s=15.0)
    built: list[_Consumer] = []
    monkeypatch.setattr(clients, "AIOKafkaConsumer", lambda *t, **o: built.append(_Consumer(*t, **o)) or built[-1])
    readiness, fence = _two()
    app = NotifyApp(s, SimpleNamespace(fail=None, spawn=None, spawn_if_running=None))  # type: ignore[arg-type]
    async with AsyncExitStack() as stack:
        feed = SimpleNamespace(hold=print)  # the ledger feed: only its `hold` is named, not called
        await app._consumer(stack, [], "routine", [ROUTINE.topic], feed, readiness, fence)  # type: ignore[arg-type]
    (consumer,) = built
    assert consumer.options["rebalance_timeout_ms"] == 30_000 == s.rebalance_timeout_ms()
    assert s.rebalance_timeout_ms() >= s.session_timeout_ms + (s.drain_s + COMMIT_TIMEOUT_S) * 1000


async def test_the_end_of_a_run_starts_no_call_and_waits_for_the_calls_under_way() -> None:
    """SIGTERM: aiokafka calls no revocation when a consumer leaves the group, so the senders went on calling for
    partitions another worker then owned, and the calls under way were cancelled before their ledger entries (the
    next owner sent them again). Now the run's end closes the fence for good (a catch-up ending later does not open
    it) and waits for those calls first."""
    readiness, fence = _two()
    await fence.enter(ROUTINE)  # a call under way
    closing = asyncio.create_task(fence.closed(5))
    await asyncio.sleep(0.01)
    assert not closing.done()
    assert not await _entered(fence, URGENT) and not await _entered(fence, ROUTINE)
    with pytest.raises(Revoked):
        fence.check(URGENT)  # a fallback waiting for its token is not sent either
    readiness.assigned("routine")  # a ledger catch-up that ends meanwhile
    assert not await _entered(fence, ROUTINE) and not await _entered(fence, None)
    fence.leave(ROUTINE)
    async with asyncio.timeout(1):
        await closing
    assert not await _entered(fence, ROUTINE) and not readiness.settled.is_set()


async def test_the_end_of_a_run_in_a_broker_outage_does_not_wait_for_ledger_entries_it_cannot_write() -> None:
    """With the broker unreachable a call's ledger entry waits for it (up to the write timeout): the end of the run
    closes the fence but does not wait, so a stop in an outage stays short."""
    readiness, fence = _two()
    readiness.broker(False)
    await fence.enter(ROUTINE)
    async with asyncio.timeout(1):
        await fence.closed(5)
    assert not await _entered(fence, URGENT)


def test_the_stop_drain_leaves_the_final_commits_their_time_within_the_stop_deadline() -> None:
    """The drain at a stop is `drain_s`, shortened so the final commits (5 s each) still fit the stop deadline."""
    assert NotifySettings(drain_s=15.0, stop_deadline_s=25.0).stop_drain_s() == 15.0
    assert NotifySettings(drain_s=15.0, stop_deadline_s=20.0, provider_timeout_s=4.0).stop_drain_s() == 10.0
    # a deadline leaving no drain is refused at start (test_settings); the arithmetic still gives none, not less
    assert NotifySettings.model_construct(drain_s=15.0, stop_deadline_s=8.0).stop_drain_s() == 0.0
