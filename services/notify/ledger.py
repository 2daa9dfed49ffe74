"""The delivery ledger: what was sent, dead-lettered or deferred, by notification id. State plus a sender.

`done` ids (sent or dead-lettered) are never handed to a provider again; `deferred`
requests survive restarts and are released by whichever worker owns their commune.
Every change is applied here first, then written to the ledger topic (key =
notification id) before the input offset that caused it is committed.

Partition-aligned (ADR 0020): an entry goes to the ledger partition of its commune, the
partition number its input records have (every commune-keyed topic has the same count),
so a worker holds only the ledger partitions of the input partitions it owns, one store
each (`Stores`: RocksDB in the service). Done ids older than `keep_ms` are forgotten
(`prune`); deferred requests are indexed by due time (`due`). Without a `Layout` (unit
tests, tools) the ledger is one in-memory partition written without a partition number.
Reading the topic (restore and tail) is `ledger_feed`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from schemas.notification import NotificationRequest
from schemas.topics import NOTIFY_LEDGER
from services.common.partitioner import partition_for
from services.common.sparse import Sparse
from services.notify import metrics
from services.notify.jobs import Clock, utcnow
from services.notify.ledger_entry import LIMIT, Entry, EntryTooLarge, Unreadable, encode, read
from services.notify.ledger_state import KV, DeferredView, DoneView, MemoryKV, PartitionState
from services.notify.personal import deferrable

log = structlog.get_logger("notify.ledger")
SKIPPED_LOGGED = Sparse()
"""One `notify.ledger_entry_skipped` line per partition and reason every `sparse.EVERY_S` at most."""
SKIPPED_REASON = "ledger_invalid"
"""The `notify_records_skipped_total` reason of a ledger record that is no entry (`ledger_entry.read`)."""
REWRITE_DEFERRED_AFTER = timedelta(milliseconds=int(NOTIFY_LEDGER.config["retention.ms"]) // 2)
"""A deferral's only durable copy is its ledger record, which the topic deletes after its retention (60 days): one
last written longer ago than half of that is written again (`refresh_deferrals`)."""


class Producer(Protocol):
    """What the ledger and the dispatcher need of a Kafka producer: one acknowledged send."""

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> object: ...


class PartitionProducer(Protocol):
    """A producer that sends to a chosen partition (aiokafka's): ledger entries go to their commune's."""

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            partition: int | None = None) -> object: ...


class Stores(Protocol):
    """Where partition states live: `open` gives an empty store for a partition, `discard` deletes it."""

    def open(self, partition: int) -> KV: ...

    def discard(self, partition: int) -> None: ...


class Unrouted(Exception):
    """A done entry whose commune is unknown: the caller did not say which notification it belongs to."""


@dataclass(frozen=True)
class Layout:
    partitions: int
    """The ledger's partition count, equal to every input topic's (checked by the app at start)."""
    sender: PartitionProducer
    stores: Stores
    keep_ms: int
    """Done ids older than this are pruned (and not restored): ADR 0020 shows no input record can still
    be redelivered by then."""


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Ledger:
    def __init__(self, topic: str, producer: Producer, *, layout: Layout | None = None, clock: Clock = utcnow,
                 max_bytes: int = LIMIT) -> None:
        self.topic, self.producer, self.layout, self.clock = topic, producer, layout, clock
        self.max_bytes = max_bytes
        """The topic's `max.message.bytes` (the registry's): a larger entry is refused before it is sent
        (`ledger_entry.EntryTooLarge`)."""
        self._states: dict[int, PartitionState] = {} if layout else {0: PartitionState(MemoryKV())}
        self.done: Set[str] = DoneView(self._states)
        self.deferred: Mapping[str, NotificationRequest] = DeferredView(self._states)
        self.commune_of: Callable[[str], str | None] = lambda nid: None
        """The commune of a notification being delivered (set by the dispatcher): routes its done entry."""

    # --- partitions held ------------------------------------------------------------------------

    @property
    def held(self) -> set[int]:
        return set(self._states) if self.layout else set()

    def hold(self, partition: int) -> None:
        """Start holding `partition` with an empty store (the feed then fills it from the topic)."""
        if self.layout is not None:
            self._states[partition] = PartitionState(self.layout.stores.open(partition))

    def drop(self, partition: int) -> None:
        if self.layout is not None and self._states.pop(partition, None) is not None:
            self.layout.stores.discard(partition)

    # --- reading the topic ----------------------------------------------------------------------

    def apply_record(self, partition: int, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        """One record read back from the topic (see `apply_records`)."""
        self.apply_records(partition, [(key, value, timestamp_ms)])

    def apply_records(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> None:
        """Records (key, value, timestamp) read back from one partition, in offset order. One of a partition not held
        changes nothing; a done entry older than the window forgets the id. A record that is no entry (a tombstone,
        not JSON, not an entry's shape: notify writes none) is skipped, counted and logged sparingly, never raised:
        raised, it ended the run, and every restore after it read it again. A done entry (nearly every record) is
        recognised without building the model (`ledger_entry.read`): restores are bounded by this.
        """
        state = self._states.get(partition if self.layout else 0)
        if state is None:
            return
        cutoff = _ms(self.clock()) - self.layout.keep_ms if self.layout else 0
        for key, value, timestamp_ms in records:
            try:
                nid, entry = read(key, value)
            except Unreadable as exc:
                _skipped(partition, exc.reason)
                continue
            if entry is not None:
                self._apply(state, nid, entry, timestamp_ms)
            elif timestamp_ms >= cutoff:
                state.mark_done(nid, timestamp_ms)
            else:  # past the window: forgotten, and so is an older deferral of the id read before it
                state.forget(nid)

    @staticmethod
    def _apply(state: PartitionState, nid: str, entry: Entry, written_ms: int) -> None:
        if entry.state == "done":
            state.mark_done(nid, written_ms)
        elif entry.request is not None:
            due = entry.request.not_before
            state.defer(nid, entry.request.model_dump_json().encode(), _ms(due) if due else written_ms, written_ms,
                        urgent=entry.request.is_emergency)

    def apply(self, nid: str, entry: Entry, partition: int = 0) -> None:
        """Apply an entry now (as written at this instant); `done` is final, a later deferral is ignored."""
        state = self._states.get(partition)
        if state is not None:
            self._apply(state, nid, entry, _ms(self.clock()))

    # --- writing --------------------------------------------------------------------------------

    async def record_done(self, nid: str, outcome: str, commune: str | None = None) -> None:
        """`commune` routes an entry whose notification is not being delivered (one skipped on arrival)."""
        entry = Entry(state="done", outcome=outcome)
        partition = self._partition_of_commune(commune) if commune is not None else self._partition_of(nid)
        await self._record(nid, entry, partition)

    async def record_deferred(self, request: NotificationRequest) -> None:
        """Kept (and written) without clear contacts: the opener fills them again at delivery (ADR 0015).
        `EntryTooLarge`, nothing kept nor written, if the entry would not fit the topic (`fits_deferred`)."""
        entry = Entry(state="deferred", request=deferrable(request))
        await self._record(request.notification_id, entry, self._partition_of_commune(request.commune))

    def fits_deferred(self, request: NotificationRequest) -> bool:
        """Whether `request` deferred (as it is: its `not_before` set) fits the topic."""
        try:
            encode(request.notification_id, Entry(state="deferred", request=deferrable(request)), self.max_bytes)
        except EntryTooLarge:
            return False
        return True

    async def _record(self, nid: str, entry: Entry, partition: int) -> None:
        value = encode(nid, entry, self.max_bytes)  # before it is applied: one refused changes nothing
        self.apply(nid, entry, partition)
        if self.layout is None:
            await self.producer.send_and_wait(self.topic, value, nid.encode())
        else:
            await self.layout.sender.send_and_wait(self.topic, value, nid.encode(), partition=partition)

    def _partition_of_commune(self, commune: str) -> int:
        return partition_for(commune.encode(), self.layout.partitions) if self.layout else 0

    def _partition_of(self, nid: str) -> int:
        if self.layout is None:
            return 0
        if (commune := self.commune_of(nid)) is not None:
            return self._partition_of_commune(commune)
        for partition, state in self._states.items():  # a released deferral is in the store
            if state.state(nid) is not None:
                return partition
        raise Unrouted("a done entry for a notification whose commune is unknown")

    # --- deferred releases and pruning ----------------------------------------------------------

    def stale_deferrals(self, older_than: timedelta, owned: Callable[[int], bool],
                        skip: Container[str] = frozenset()) -> list[tuple[int, str]]:
        """(partition, id) of every deferral of the `owned` partitions last written more than `older_than` ago (ids
        in `skip`, in flight, left out): what `rewrite_deferral` keeps. A visit's day-before message can wait
        longer than the topic keeps records, and every run restores from the topic (ADR 0020, 0025)."""
        cutoff = _ms(self.clock() - older_than)
        return [(partition, nid) for partition, state in list(self._states.items()) if owned(partition)
                for nid, _ in state.deferred_written_before(cutoff) if nid not in skip]

    async def rewrite_deferral(self, partition: int, nid: str, owned: Callable[[int], bool],
                               skip: Container[str] = frozenset()) -> bool:
        """Write deferral `nid` again, unchanged, if its partition is still `owned`, it is still deferred and not in
        `skip` (in flight); whether it was written. Only the releasing owner may call it, inside the fence, one
        record per entry: a copy written after another worker's done entry would outlive it in compaction and
        come back due. `EntryTooLarge` if it no longer fits the topic (written under a larger limit)."""
        state = self._states.get(partition)
        if state is None or not owned(partition) or nid in skip or state.state(nid) != "deferred":
            return False
        raw = state.request_json(nid)
        if raw is None:
            return False
        await self._record(nid, Entry(state="deferred", request=NotificationRequest.model_validate_json(raw)),
                           partition)
        return True

    async def refresh_deferrals(self, older_than: timedelta, owned: Callable[[int], bool],
                                skip: Container[str] = frozenset()) -> int:
        """`rewrite_deferral` of every `stale_deferrals` entry, without a fence (tools, tests); how many."""
        written = 0
        for partition, nid in self.stale_deferrals(older_than, owned, skip):
            written += await self.rewrite_deferral(partition, nid, owned, skip)
        return written

    def due(self, now: datetime, owned: Callable[[int], bool],
            skip: Container[str] = frozenset()) -> Iterator[NotificationRequest]:
        """Deferred requests due by `now` in the `owned` partitions, earliest first per partition; ids in `skip`
        (already released, in flight) are passed over unread: after quiet hours the due prefix can be long."""
        return (request for _, request in self.due_in(now, owned, skip))

    def due_in(self, now: datetime, owned: Callable[[int], bool],
               skip: Container[str] = frozenset()) -> Iterator[tuple[int, NotificationRequest]]:
        """`due`, each request with its ledger partition (= its commune's input partition, ADR 0020)."""
        for partition, raw, _ in self.due_raw_in(now, owned, skip):
            yield partition, NotificationRequest.model_validate_json(raw)

    def due_raw_in(self, now: datetime, owned: Callable[[int], bool],
                   skip: Container[str] = frozenset()) -> Iterator[tuple[int, bytes, bool]]:
        """`due_in` unparsed: each request's JSON as stored (redacted), and whether it is an emergency, for a caller
        that passes some over. Every owned partition's due emergencies come first, then the routine requests."""
        for urgent in (True, False):
            for partition, state in list(self._states.items()):
                if owned(partition):
                    for nid, raw in state.due(_ms(now), urgent):
                        if nid not in skip:
                            yield partition, raw, urgent

    def prune(self, limit: int = 10_000) -> int:
        """Forget up to `limit` done ids per partition older than the window; returns how many went."""
        if self.layout is None:
            return 0
        cutoff = _ms(self.clock()) - self.layout.keep_ms
        return sum(state.prune(cutoff, limit) for state in list(self._states.values()))


def _skipped(partition: int, reason: str) -> None:
    """Counted; logged with the partition and the reason code only (a record that is no entry may hold anything)."""
    metrics.SKIPPED.labels(SKIPPED_REASON).inc()
    if (skipped := SKIPPED_LOGGED.due((partition, reason))) is not None:
        log.error("notify.ledger_entry_skipped", partition=partition, why=reason, skipped_since_last=skipped)
