"""What the group assigned the deadline tracker, and what it has restored: pure bookkeeping for the loop.

The rebalance callback only records an assignment (`assigned`) and returns; the consume loop restores it
(`pending`, then `taken`). Assignments can overtake a restore: a partition left out of any of them may
have been owned and written by another worker meanwhile, so whatever this tracker holds of it is stale
and is restored again if it comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
