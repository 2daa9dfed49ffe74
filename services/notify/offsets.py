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
    """Commit point per partition = one past the highest offset whose predecessors are all complete.

    A partition's `epoch` counts its revocations (`forget`). A record is added only while its partition's epoch is
    the one of its fetch (`Records.handle`): otherwise a revocation in the middle of a batch (aiokafka runs it in its
    coordinator task, beside the consumer's loop) started the partition's slots afresh with the rest of the batch,
    and its commit point passed the records whose notifications were still queued when it committed (audit)."""

    _slots: dict[P, deque[_Slot]] = field(default_factory=dict)
    _committable: dict[P, int] = field(default_factory=dict)
    _epochs: dict[P, int] = field(default_factory=dict)

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

    def epoch(self, partition: P) -> int:
        """How many times `partition` was forgotten: a record fetched under another epoch is no longer this worker's
        to handle (the partition's next owner, or this worker's fresh fetch once it is assigned again, redoes it)."""
        return self._epochs.get(partition, 0)

    def forget(self, partition: P) -> None:
        """The partition was revoked: its pending offsets go, and its records fetched until now are stale."""
        self._slots.pop(partition, None)
        self._committable.pop(partition, None)
        self._epochs[partition] = self.epoch(partition) + 1
