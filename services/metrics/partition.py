"""The state of one partition: entity states in a key-value store plus the communes' totals derived from them.

A commune's events share a partition on every canonical topic (key = commune),
so partition N of all three families is one unit: the worker that owns it
holds its store and exports its communes. `apply` returns the changelog
record to publish; `restore` replays changelog records into an empty store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson

from schemas.admin import commune_provinces
from schemas.deadletter import Reason, Rejection, internal_error
from services.common import store_faults
from services.metrics.aggregate import CommuneTotals, EntityState
from services.metrics.handlers import HANDLERS, Decoded
from services.metrics.state import (
    BELIEVE_ALL,
    DISBELIEVED_SHIFT,
    MAX_CLUSTERS,
    AnnouncementState,
    ClusterBroadcast,
    DossierState,
    SupportState,
    TooManyClusters,
    TrainingState,
    VisitState,
    micros,
)

Store = MutableMapping[bytes, bytes]
"""Entity key -> serialised state. A rocksdict `Rdict` in production, a dict in unit tests."""

LOADERS: dict[bytes, Callable[[Any], EntityState]] = {
    b"d": lambda v: DossierState(*v),
    b"v": lambda v: VisitState(*v),
    b"t": lambda v: TrainingState(*v),
    b"s": lambda v: SupportState(*v),
    b"a": lambda v: AnnouncementState(v[0], v[1], v[2], v[3], {c: ClusterBroadcast(*b) for c, b in v[4].items()},
                                      *v[5:]),
}
"""State kind (the store key's first letter, `handlers.StateKind`) -> state from its decoded JSON array (an
announcement's written before its newest broadcast was kept has 5 members: the others take their defaults)."""


def entity_key(event: Decoded) -> bytes:
    """Kind, commune and entity id: never exported, only the store's key. The event's type must change state."""
    handler = HANDLERS[event.type]
    if handler is None:
        raise ValueError(f"{event.type} changes no entity")
    return f"{handler.kind}|{event.commune}|{handler.ident(event)}".encode()


def dumps(state: EntityState) -> bytes:
    """The state as a JSON array; a visit's without its `newest_at` when it has none (nearly all), in the 7 members
    a worker before that field reads too (a rolling upgrade or a roll-back restores them, not skips them)."""
    if type(state) is VisitState and state.newest_at is None:
        return orjson.dumps(state[:-1])
    return orjson.dumps(state, default=tuple)


def loads(key: bytes, value: bytes) -> EntityState:
    return LOADERS[key[:1]](orjson.loads(value))


def merge(old: EntityState | None, event: Decoded, believed_until_us: int = BELIEVE_ALL) -> EntityState | None:
    """The entity's next state, or None if the event changes nothing."""
    handler = HANDLERS[event.type]
    if handler is None:
        return None
    at = micros(event)
    return handler.merge(old, event, at if at <= believed_until_us else at - DISBELIEVED_SHIFT)


TOO_MANY_CLUSTERS = Rejection(
    reason=Reason.TOO_LARGE, field="data.cluster_id",
    message=f"the announcement already holds {MAX_CLUSTERS} clusters: this cluster's broadcast is not counted")
"""A broadcast beyond its announcement's `state.MAX_CLUSTERS`: skipped and counted by the shell (names no id)."""


class PartitionState:
    def __init__(self, partition: int, store: Store) -> None:
        self.partition = partition
        self.store = store
        self.communes: dict[str, CommuneTotals] = {}

    def apply(self, event: Decoded, believed_until_us: int = BELIEVE_ALL,
              received_ms: int = 0) -> tuple[bytes, bytes] | Rejection | None:
        """Merge one event; returns the changelog record (key, new state), None if nothing changed, or a Rejection
        (`TOO_MANY_CLUSTERS`) for an event refused by a state's bound: the state is left as it was.

        `believed_until_us`: `state.believed_until` of the record's timestamp; an event dated later is ordered before
        every believable one (`state.DISBELIEVED_SHIFT`). The default believes every time (no clock: tests).
        `received_ms`: the record's timestamp (epoch ms), the commune's last-received time if the event changes a
        state (an event that changes nothing, a repeat, leaves it: a restore could not know of it)."""
        handler = HANDLERS[event.type]  # the hot path: one lookup, then the entry's own functions
        if handler is None:
            return None
        key = f"{handler.kind}|{event.commune}|{handler.ident(event)}".encode()
        raw = self.store.get(key)
        old = loads(key, raw) if raw is not None else None
        at = micros(event)
        if at > believed_until_us:
            at -= DISBELIEVED_SHIFT
        try:
            new = handler.merge(old, event, at)
        except TooManyClusters:
            return TOO_MANY_CLUSTERS
        if new is None:
            return None
        value = dumps(new)
        self.store[key] = value
        totals = self._totals(event.commune, event.province)
        totals.replace(old, new)
        totals.mark_received(received_ms)
        return key, value

    def apply_safely(self, event: Decoded, believed_until_us: int = BELIEVE_ALL,
                     received_ms: int = 0) -> tuple[bytes, bytes] | Rejection | None:
        """`apply` that raises only `StoreFault` (the store's disk failing: the process ends): any other unexpected
        exception is returned as an `internal_error` Rejection.

        Everything that can fail for one event (its entity key, the merge, serialising the state) runs before
        the store is written, so such an event leaves the store as it was; the shell counts and skips it.
        """
        try:
            return self.apply(event, believed_until_us, received_ms)
        except Exception as exc:  # a bug met by one event must not stop the partition
            store_faults.raise_if_fault(exc)  # (the store's disk failing is no event's bug: the process ends)
            return internal_error(exc)

    def restore(self, key: bytes, value: bytes | None, received_ms: int = 0) -> None:
        """Apply one changelog record (a state written by `apply`); a tombstone is ignored. `received_ms`: the
        record's timestamp, which the writer sets to the commune's last-received time when the state changed
        (`received_ms`), so the commune's last-received time is what it was before the restore."""
        if value is None:
            return
        commune = key.split(b"|", 2)[1].decode()
        province = commune_provinces()[commune]
        new = loads(key, value)  # everything that can fail before the store is written: store and totals agree
        raw = self.store.get(key)
        old = loads(key, raw) if raw is not None else None
        self.store[key] = value
        totals = self._totals(commune, province)
        totals.replace(old, new)
        totals.mark_received(received_ms)

    def received_ms(self, commune: str) -> int:
        """The timestamp of the changelog record of a state of `commune` `apply` just changed: the commune's
        last-received time, at least that event's own. The last record of the commune's last change carries it, and
        compaction keeps that record, so a restore gives it back also when records' timestamps went backwards (a
        state's later change stamped before the one compaction removed: an intake clock set back)."""
        return self.communes[commune].last_received_ms

    def _totals(self, commune: str, province: str) -> CommuneTotals:
        totals = self.communes.get(commune)
        if totals is None:
            totals = self.communes[commune] = CommuneTotals(province)
        return totals

    def states(self) -> Iterator[tuple[bytes, EntityState]]:
        for key, value in self.store.items():
            yield key, loads(key, value)
