"""Which input offsets may be committed: a record counts once all its notifications are done. Pure."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)
COMMIT_TIMEOUT_S = 5.0
"""How long one commit may wait for the group coordinator (the input consumers' and the erasure notices'): aiokafka
retries a commit for as long as the broker is gone, and a revocation's commit runs inside the coordinator task that
`consumer.stop` waits for."""


@dataclass
class _Slot:
    offset: int
    remaining: int


@dataclass
class OffsetTracker(Generic[P]):
    """Commit point per partition = one past the highest offset whose predecessors are all complete."""

    _slots: dict[P, deque[_Slot]] = field(default_factory=dict)
    _committable: dict[P, int] = field(default_factory=dict)

    def add(self, partition: P, offset: int, parts: int) -> _Slot:
        slot = _Slot(offset, parts)
        self._slots.setdefault(partition, deque()).append(slot)
        self._advance(partition)
        return slot

    def complete(self, partition: P, slot: _Slot) -> None:
        slot.remaining -= 1
        self._advance(partition)

    def _advance(self, partition: P) -> None:
        slots = self._slots.get(partition)
        while slots and slots[0].remaining <= 0:
            self._committable[partition] = slots.popleft().offset + 1

    def take_committable(self, among: Collection[P] | None = None) -> dict[P, int]:
        """The new commit points (of the partitions in `among`, or all); others stay until taken."""
        if among is None:
            out, self._committable = self._committable, {}
            return out
        return {p: self._committable.pop(p) for p in [p for p in self._committable if p in among]}

    def restore(self, offsets: Mapping[P, int]) -> None:
        """Put back commit points whose commit failed, for partitions still tracked (not forgotten since)."""
        for partition, offset in offsets.items():
            if partition in self._slots:
                self._committable[partition] = max(offset, self._committable.get(partition, offset))

    def forget(self, partition: P) -> None:
        self._slots.pop(partition, None)
        self._committable.pop(partition, None)
