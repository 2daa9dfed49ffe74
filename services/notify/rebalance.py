"""Partition moves of notify's two consumers, readiness, and the fence in front of every provider call.

The worker is ready once both consumers have their assignment, the ledger has
caught up and the broker answers; not while either consumer is rebalancing or the
broker is unreachable. A failed catch-up raises (the runtime's listener base ends
the run); a refused commit is logged and counted by `commit` and the records it
covered are redone by the next owner.

The fence (ADR 0012): a provider call is made only while this worker is certainly
still the owner of what it sends. A send waits while the consumer its job came from
is rebalancing (see `Fence`), and a revocation waits for the calls already under
way (and their ledger entries) before it commits and lets the partitions go, so the
next owner's ledger catch-up sees them. A worker whose event loop stood still for
longer than `stall_limit_s` (SIGSTOP, a stalled VM, a long GC pause) may have been
evicted without knowing it: it sends nothing more and ends its run
(`services.common.stall`), and the runtime starts it afresh (rejoin, ledger restored).
Cut off from the broker, a worker runs on and aiokafka keeps it a member until a
heartbeat is answered, which may be tens of seconds: a consumer its group has not
answered as a member for nearly a session (`heard_limit_s`), or has just answered
that it is none, sends nothing until the group answers again. Healed, the records a
fetch answered before the cut reach it first, and are another worker's by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.aiokafka_compat import heard_at
from services.common.health import Health
from services.common.kip447 import known_member
from services.common.rebalance import Fail, RebalanceListener
from services.common.stall import StallWatch
from services.notify import metrics
from services.notify.jobs import Revoked

log = structlog.get_logger("notify")


class Readiness:
    """Ready when every named consumer is assigned (after its ledger catch-up) and the broker answers."""

    def __init__(self, health: Health, consumers: Iterable[str]) -> None:
        self.health = health
        self._waiting = set(consumers)
        self._broker_ok = True
        self._ending = False
        self.settled = asyncio.Event()
        """Set while no consumer is rebalancing: what a send of no known consumer's partition waits on."""
        self._settled = {consumer: asyncio.Event() for consumer in consumers}

    def assigned(self, consumer: str) -> None:
        if self._ending:  # a catch-up that ended after `end`: the run is over, no call may start again
            return
        self._waiting.discard(consumer)
        self._settled[consumer].set()
        if not self._waiting:
            self.settled.set()
        self._report()

    def rebalancing(self, consumer: str) -> None:
        self._waiting.add(consumer)
        self._settled[consumer].clear()
        self.settled.clear()
        self._report()

    def end(self) -> None:
        """The run is ending: every consumer counts as rebalancing from now on, for good."""
        self._ending = True
        for consumer in self._settled:
            self.rebalancing(consumer)

    @property
    def broker_ok(self) -> bool:
        return self._broker_ok

    def settled_for(self, consumer: str | None) -> asyncio.Event:
        """Set while `consumer` is assigned, its ledger caught up (None: every consumer)."""
        return self.settled if consumer is None else self._settled[consumer]

    def broker(self, ok: bool) -> None:
        if ok != self._broker_ok:
            self._broker_ok = ok
            self._report()

    def _report(self) -> None:
        if self._waiting:
            self.health.set_ready(False, f"{', '.join(sorted(self._waiting))} consumer rebalancing")
        elif not self._broker_ok:
            self.health.set_ready(False, "broker unreachable")
        else:
            self.health.set_ready(True, "assigned, ledger caught up, consuming")


def _any(source: object) -> str | None:
    return None


def _always(consumer: str | None) -> bool:
    return True


MEMBER_WAIT_S = 0.1
"""How often a call held for a consumer that may be no member looks again."""


def known_members(consumers: Mapping[str, AIOKafkaConsumer], heard_limit_s: float,
                  clock: Callable[[], float] = time.monotonic) -> Callable[[str | None], bool]:
    """`Fence`'s `member` for the named consumers (None: every one): each holds its group's generation
    (`kip447.known_member`) and its group answered it as a member within `heard_limit_s` (`aiokafka_compat.heard_at`).
    A consumer not named yet is no reason to wait: the fence waits for its assignment."""
    def member(name: str | None) -> bool:
        chosen = list(consumers.values()) if name is None else [consumers[name]] if name in consumers else []
        return all(known_member(c) and clock() - (heard_at(c) or 0.0) < heard_limit_s for c in chosen)
    return member


class Fence:
    """May this worker call a provider now? See the module docstring; `watch` is a supervised task.

    A call waits for the consumer its job came from (`consumer_of` its source partition; every consumer when it
    names none): both consumers are members of one group, so a rebalance reaches each, and a consumer still
    assigned owns its partitions until it rejoins. An emergency of the urgent consumer's announcements does not
    wait for the routine consumer's ledger restore, which a long outage's parked requests make minutes long."""

    def __init__(self, readiness: Readiness, stalls: StallWatch,
                 consumer_of: Callable[[object], str | None] = _any,
                 member: Callable[[str | None], bool] = _always) -> None:
        self.readiness, self.stalls, self.consumer_of, self.member = readiness, stalls, consumer_of, member
        self._calls: dict[str | None, int] = {}
        """Calls under way by the consumer their jobs came from (None: not known)."""
        self._left = asyncio.Event()
        """Set when a consumer's last call under way has left: a drain looks again."""

    async def enter(self, source: object = None) -> None:
        """Before a provider call for a job from `source` (an input partition): wait out its consumer's rebalance,
        refuse after a stall; pair with `leave(source)`."""
        consumer = self.consumer_of(source)
        settled = self.readiness.settled_for(consumer)
        while not settled.is_set() or not self.member(consumer):
            if settled.is_set():  # no word from the group: cut off, or told it is no member (chaos, notify-partition)
                await asyncio.sleep(MEMBER_WAIT_S)
            else:
                await settled.wait()
        self.stalls.check()  # the last thing before the call: no await between this and the request
        self._calls[consumer] = self._calls.get(consumer, 0) + 1

    def check(self, source: object = None) -> None:
        """Again, right before a call made after an await inside the fence (a fallback, once ZNS answered and SMS's
        rate gave a token), and while it waits for the token: the worker may have stood still past the limit
        meanwhile, or the consumer of `source` been revoked (its drain may have given up and the partition gone: the
        next owner sends it; ADR 0012)."""
        self.stalls.check()
        consumer = self.consumer_of(source)
        if not self.readiness.settled_for(consumer).is_set() or not self.member(consumer):
            raise Revoked(f"{consumer or 'a'} consumer rebalancing")

    def leave(self, source: object = None) -> None:
        """After the call and its ledger entry (or failure)."""
        consumer = self.consumer_of(source)
        self._calls[consumer] -= 1
        if not self._calls[consumer]:
            del self._calls[consumer]
            self._left.set()

    def _under_way(self, consumer: str | None) -> int:
        """The calls a revocation of `consumer` waits for: its own and those of no known consumer (every call with
        None)."""
        if consumer is None:
            return sum(self._calls.values())
        return self._calls.get(consumer, 0) + self._calls.get(None, 0)

    async def drained(self, timeout_s: float, consumer: str | None = None) -> None:
        """Return once no provider call of `consumer`'s jobs is under way (None: of any job), or `timeout_s` passed
        (the next owner may then resend). The other consumer's calls go on: it still owns its partitions."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._under_way(consumer):
                    self._left.clear()
                    await self._left.wait()
        except TimeoutError:  # seen, not silent: each such call's notification may reach its citizen twice
            metrics.DRAIN_TIMEOUTS.inc()
            log.warning("notify.drain_timeout", calls_under_way=self._under_way(consumer), waited_s=timeout_s)

    async def closed(self, timeout_s: float) -> None:
        """At the end of a run (an orderly stop, or a failure unwinding), before the final commit and the consumers
        leave the group (aiokafka calls no revocation on stop): no provider call starts from here on (`enter` waits,
        `check` raises `Revoked`), and the calls under way finish and reach the ledger, within `timeout_s`; the next
        owner's ledger catch-up sees them. Not waited for while the broker is unreachable: their entries could not
        be written, and the stop stays short (ADR 0012)."""
        self.readiness.end()
        if self.readiness.broker_ok:
            await self.drained(timeout_s)


SpawnIfRunning = Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[None] | None]
"""`Supervisor.spawn_if_running`: a task, or None once the run is ending."""


class Listener(RebalanceListener):
    """One consumer's partition moves. On assignment the new partitions stay paused while their ledger
    partitions are restored or caught up in a supervised task (`hold`: a restore may outlast the session
    timeout, and a long rebalance callback stops heartbeats), then resumed; the consumer counts as assigned
    only then. On revocation that task is cancelled first."""

    def __init__(self, fail: Fail, name: str, readiness: Readiness, fence: Fence, *,
                 commit: Callable[[str], Awaitable[None]], forget: Callable[[TopicPartition], None],
                 hold: Callable[[set[int]], Awaitable[None]], pause: Callable[[set[TopicPartition]], None],
                 resume: Callable[[set[TopicPartition]], None], spawn: SpawnIfRunning,
                 drain_s: float) -> None:
        super().__init__(fail)
        self.name, self.readiness, self.fence, self.drain_s = name, readiness, fence, drain_s
        self._commit, self._forget, self._hold, self._spawn = commit, forget, hold, spawn
        self._pause, self._resume = pause, resume
        self._readying: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Cancel a catch-up under way (the run is ending, or the partitions are going)."""
        if self._readying is not None and not self._readying.done():
            self._readying.cancel()
            await asyncio.wait({self._readying})
        self._readying = None

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self.readiness.rebalancing(self.name)  # no new provider call from here on
        await self.stop()
        await self.fence.drained(self.drain_s, self.name)  # calls under way finish and reach the ledger first
        await self._commit("revoke")
        for tp in partitions:
            self._forget(tp)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self._pause(partitions)  # before any await: nothing of them is fetched until the ledger has caught up
        # None once the run's task group is ending: nothing is made ready, nothing failed (it was counted; audit)
        self._readying = self._spawn(f"{self.name}-ledger", self._ready(partitions))

    async def _ready(self, partitions: set[TopicPartition]) -> None:
        await self._hold({tp.partition for tp in partitions})  # see what the previous owner sent before redoing
        self._resume(partitions)
        self.readiness.assigned(self.name)
