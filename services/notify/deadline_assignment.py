"""What the group assigned the deadline tracker, and what it has restored: bookkeeping for the loop.

The rebalance callback only records an assignment (`assigned`) and returns; the consume loop restores it
(`pending`, then `taken`). Assignments can overtake a restore: a partition left out of any of them may
have been owned and written by another worker meanwhile, so whatever this tracker holds of it is stale
and is restored again if it comes back. Nothing is written while the group may have moved on: a loop that
stood still (a pause past the session) waits until the group answers it again (`answered_again`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiokafka.errors import KafkaError

from services.common.aiokafka_compat import heard_at

log = structlog.get_logger("notify.deadlines")
B = TypeVar("B")
ASK_EVERY_S = 0.1
GIVE_UP_S = 240.0
"""How long `answered_again` waits before it ends the run (a fresh consumer): under aiokafka's `max_poll_interval_ms`
(300 s, the tracker's), past which a consumer that has not polled leaves its group and never joins again until it
polls (review: the wait, which does not poll, then lasted for ever after an outage over five minutes)."""


class Unanswered(KafkaError):
    """The group did not answer the tracker for `GIVE_UP_S`: the run ends and restarts (restoring)."""


class WritesUnacknowledged(KafkaError):
    """Alerts, changelog records or a commit not acknowledged in time: the broker is gone or stalled. The run ends
    and restarts; an alert whose changelog record was not written fires again (same id, notify's ledger stops it)."""


@dataclass
class Pending:
    wanted: set[int]
    stale: set[int]
    seen: int


@dataclass
class Assignment:
    partitions: int
    latest: set[int] | None = None
    """The group's last assignment (None while rebalancing)."""
    owned: set[int] = field(default_factory=set)
    """Restored and tracked: only these are consumed and ticked."""
    count: int = 0
    unassigned: set[int] = field(default_factory=set)

    def assigned(self, numbers: set[int]) -> None:
        self.latest = set(numbers)
        self.count += 1
        self.unassigned |= set(range(self.partitions)) - numbers

    def revoked(self) -> None:
        self.latest = None
        self.owned = set()

    def pending(self) -> Pending | None:
        """The restore to do now (partitions wanted, held states to drop as stale), or None if none."""
        if self.latest is None or (self.latest == self.owned and not self.unassigned):
            return None
        stale, self.unassigned = self.unassigned, set()
        return Pending(set(self.latest), stale, self.count)

    def taken(self, done: Pending) -> bool:
        """Own what `done` restored, unless a later assignment or a revocation overtook it."""
        if self.count != done.seen or self.latest is None:
            return False
        self.owned = set(done.wanted)
        return True


def answered(consumer: Any, heard_limit_s: float, clock: Callable[[], float] = time.monotonic) -> bool:
    """The group answered `consumer` as a member within `heard_limit_s` (`aiokafka_compat.heard_at`; not tracked:
    yes): what the tracker holds is still its own to write."""
    at = heard_at(consumer)
    return at is None or clock() - at < heard_limit_s


async def answered_again(consumer: Any, assignment: Assignment, heard_limit_s: float, stop: asyncio.Event,
                         batch: B, give_up_s: float = GIVE_UP_S) -> B | None:
    """`batch` at once if the group answered `consumer` as a member within `heard_limit_s`. Otherwise wait until it
    answers again: `batch` back if the assignment stood meanwhile, None if it changed (a revocation and a new
    assignment put the positions back to the committed offsets: its records come again, to whoever owns them now)
    or `stop` came. A tracker paused past its session resumed with a fetched batch and a tick due, and wrote both
    (older states, an alert's flags) over the next owner's changelog records before its first heartbeat was
    answered: compaction kept them, a closed dossier open again (audit, ADR 0022). `Unanswered` after `give_up_s`."""
    if answered(consumer, heard_limit_s):
        return batch
    seen, began = assignment.count, time.monotonic()
    # info: a rebalance whose join outlasts the limit (no heartbeat meanwhile) comes here too, and is no fault
    log.info("deadline.unanswered", seconds=round(began - (heard_at(consumer) or 0.0), 1))
    while not answered(consumer, heard_limit_s):
        if time.monotonic() - began > give_up_s:
            raise Unanswered(f"the group has not answered this tracker for {give_up_s:g} s")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ASK_EVERY_S):
                await stop.wait()
        if stop.is_set():
            return None
    return batch if assignment.count == seen and assignment.latest is not None else None
