"""What the dispatcher moves around: jobs and the claims waiting on them, the two lanes, and its injected I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from schemas.notification import ChannelKind, NotificationRequest
from services.notify.policy import TokenBucket

Done = Callable[[], None]
"""Called once per claim when its notification is durably sent, dead-lettered or deferred."""
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


_STEADY_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def steady() -> datetime:
    """The monotonic clock as a datetime, for durations only (a circuit's probe interval): a step of the wall clock
    (NTP, a mis-set host) neither holds a circuit open for the step's length nor lets it probe early. Not a date."""
    return _STEADY_ORIGIN + timedelta(seconds=time.monotonic())


class Spawn(Protocol):
    """Starts a background task that someone owns (in the service: `Supervisor.spawn`, whose failures end the run)."""

    def __call__(self, name: str, coro: Coroutine[Any, Any, None], /) -> asyncio.Task[None]: ...


class Revoked(Exception):
    """Raised by `Gate.check` when the consumer a call's job came from is rebalancing: the call is not made (it is not
    on the wire yet), and the job goes back to the fence (ADR 0012)."""


class Gate(Protocol):
    """What stands before every provider call (in the service: `rebalance.Fence`); `leave` once per `enter`."""

    async def enter(self, source: object = None) -> None:
        """`source`: the input partition the call's job came from (None: any)."""

    def leave(self, source: object = None) -> None: ...

    def check(self, source: object = None) -> None:
        """Raise (`WorkerStalled`, a Kafka error) if this worker may no longer own what it sends, or `Revoked` if the
        consumer of `source` is rebalancing: called again right before a call made after an await inside the gate (a
        fallback after the first provider's answer and a token), and while it waits for that token."""


class OpenGate:
    """No fence (unit tests, tools): every call may go."""

    async def enter(self, source: object = None) -> None:
        return None

    def leave(self, source: object = None) -> None:
        return None

    def check(self, source: object = None) -> None:
        return None


@dataclass
class Claim:
    """One input record waiting for this notification: its callback and partition (None: a released deferral)."""

    done: Done
    source: object = None


@dataclass
class Job:
    request: NotificationRequest
    claims: list[Claim]
    attempt: int = 0
    attempts: int | None = None
    """Its budget of attempts on retryable failures before it is parked or dead-lettered; None: the backoff's.
    A request released from the ledger gets `RELEASED_ATTEMPTS`: parked through an outage, it is tried briefly and
    parked again, not held in memory for a whole budget each time (review: released jobs starved the input)."""


RELEASED_ATTEMPTS = 3


@dataclass(frozen=True)
class Outputs:
    status: str
    dlq: str


@dataclass(eq=False)
class Lane:
    """A queue with its own senders: emergencies never wait behind routine notifications. Its rate buckets are the
    other lane's too (one a channel), from which an emergency may borrow (`TokenBucket`)."""

    name: str
    queue: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)
    buckets: dict[ChannelKind, TokenBucket] = field(default_factory=dict)
