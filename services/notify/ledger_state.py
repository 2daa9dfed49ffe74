"""One ledger partition's state over an ordered key-value store: done ids by age, deferred requests by due time. Pure.

Three key families in one ordered store (RocksDB in the service, `MemoryKV` in tests and tools):

- ``I`` + id -> ``D`` + written (done) or ``F`` + written + due (deferred): the id's state, one lookup;
- ``A`` + written + id -> empty: done ids in age order, so pruning reads only what it deletes;
- ``Q`` + due + id -> the (redacted) request as JSON: deferred requests in due-time order, so a release reads
  only what is due; ``U`` + due + id the same for emergencies, an index of their own, so a release finds every due
  emergency before it reads any routine request (however many of those a long outage or a night has made due).

Times are milliseconds since the epoch, 8 bytes big-endian, so byte order is time order. `done` is final: a
later deferral of a done id (from a worker whose ledger lagged) is ignored. A deferred entry is never pruned by
age: it waits for its release, which turns it into a done entry that then ages like any other. `DoneView` and
`DeferredView` read the states of every partition a worker holds as one set and one mapping.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from typing import Literal, Protocol

from schemas.notification import NotificationRequest

DONE, DEFERRED = b"D", b"F"
ID, AGE, DUE, URGENT = b"I", b"A", b"Q", b"U"
State = Literal["done", "deferred"]


class KV(Protocol):
    """The ordered store a partition state needs: point reads and writes, and a forward scan from a key."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with key >= `start`, in key order; writes made during the scan need not be seen."""
        ...


class MemoryKV:
    """An in-memory `KV` for unit tests and tools: scans sort the keys each time (not for production sizes)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)

    def scan(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self._data if k >= start):
            if key in self._data:
                yield key, self._data[key]


def _ms(value: int) -> bytes:
    return value.to_bytes(8, "big") if value > 0 else bytes(8)


def _time(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _due_key(state: bytes, key: bytes) -> bytes:
    """The due-index key of a deferred id from its state (``F`` + written + due, then ``U`` for an emergency)."""
    return (URGENT if state[17:18] == URGENT else DUE) + state[9:17] + key


class PartitionState:
    """The done ids and deferred requests of one ledger partition; counts are kept as entries come and go."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv
        self.done_count = 0
        self.deferred_count = 0

    def state(self, nid: str) -> State | None:
        raw = self.kv.get(ID + nid.encode())
        if raw is None:
            return None
        return "done" if raw[:1] == DONE else "deferred"

    def request_json(self, nid: str) -> bytes | None:
        """The deferred request of `nid` as written, or None if `nid` is not deferred."""
        raw = self.kv.get(ID + nid.encode())
        if raw is None or raw[:1] != DEFERRED:
            return None
        return self.kv.get(_due_key(raw, nid.encode()))

    def mark_done(self, nid: str, written_ms: int) -> None:
        """`nid` is done; it ages from the latest time it was written (a repeat makes it younger, never older)."""
        key = nid.encode()
        raw = self.kv.get(ID + key)
        if raw is not None and raw[:1] == DONE:
            if _time(raw[1:9]) >= written_ms:
                return
            self.kv.delete(AGE + raw[1:9] + key)
            self.done_count -= 1
        elif raw is not None:  # deferred until now: it leaves the due index
            self.kv.delete(_due_key(raw, key))
            self.deferred_count -= 1
        self.kv.put(ID + key, DONE + _ms(written_ms))
        self.kv.put(AGE + _ms(written_ms) + key, b"")
        self.done_count += 1

    def defer(self, nid: str, request_json: bytes, due_ms: int, written_ms: int, urgent: bool = False) -> None:
        """`nid` waits until `due_ms` (in the emergencies' index if `urgent`); ignored if it is already done; a
        newer deferral replaces an older one."""
        key = nid.encode()
        raw = self.kv.get(ID + key)
        if raw is not None and raw[:1] == DONE:
            return
        if raw is not None:
            self.kv.delete(_due_key(raw, key))
            self.deferred_count -= 1
        self.kv.put(ID + key, DEFERRED + _ms(written_ms) + _ms(due_ms) + (URGENT if urgent else b""))
        self.kv.put((URGENT if urgent else DUE) + _ms(due_ms) + key, request_json)
        self.deferred_count += 1

    def forget(self, nid: str) -> None:
        """Nothing is held for `nid` any more (a done entry past the window, read back after an older deferral of
        the same id: that deferral must not come back due)."""
        key = nid.encode()
        raw = self.kv.get(ID + key)
        if raw is None:
            return
        if raw[:1] == DONE:
            self.kv.delete(AGE + raw[1:9] + key)
            self.done_count -= 1
        else:
            self.kv.delete(_due_key(raw, key))
            self.deferred_count -= 1
        self.kv.delete(ID + key)

    def due(self, now_ms: int, urgent: bool | None = None) -> Iterator[tuple[str, bytes]]:
        """(id, request JSON) of the deferred entries due by `now_ms`: the emergencies' (`urgent`), the others'
        (not `urgent`) or both (None, emergencies first), each index earliest first; reads nothing later."""
        for family in (URGENT, DUE) if urgent is None else (URGENT if urgent else DUE,):
            for key, value in self.kv.scan(family):
                if key[:1] != family or _time(key[1:9]) > now_ms:
                    break
                yield key[9:].decode(), value

    def _deferred(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, request JSON) of every deferred entry, emergencies first."""
        for family in (URGENT, DUE):
            for key, value in self.kv.scan(family):
                if key[:1] != family:
                    break
                yield key, value

    def deferred_written_before(self, cutoff_ms: int) -> list[tuple[str, bytes]]:
        """(id, request JSON) of the deferred entries last written before `cutoff_ms` (reads every deferral)."""
        out = []
        for key, value in self._deferred():
            raw = self.kv.get(ID + key[9:])
            if raw is not None and raw[:1] == DEFERRED and _time(raw[1:9]) < cutoff_ms:
                out.append((key[9:].decode(), value))
        return out

    def deferred_ids(self) -> Iterator[str]:
        for key, _ in self._deferred():
            yield key[9:].decode()

    def done_ids(self) -> Iterator[str]:
        for key, _ in self.kv.scan(AGE):
            if key[:1] != AGE:
                return
            yield key[9:].decode()

    def prune(self, cutoff_ms: int, limit: int) -> int:
        """Forget at most `limit` done ids last written before `cutoff_ms`, oldest first; returns how many."""
        pruned = 0
        for key, _ in self.kv.scan(AGE):
            if pruned >= limit or key[:1] != AGE or _time(key[1:9]) >= cutoff_ms:
                break
            nid = key[9:]
            self.kv.delete(key)
            if self.kv.get(ID + nid) == DONE + key[1:9]:
                self.kv.delete(ID + nid)
            self.done_count -= 1
            pruned += 1
        return pruned


class DoneView(Set[str]):
    """The done ids of every held partition (membership is a lookup per partition, never a scan)."""

    def __init__(self, states: Mapping[int, PartitionState]) -> None:
        self._states = states

    def __contains__(self, nid: object) -> bool:
        return isinstance(nid, str) and any(s.state(nid) == "done" for s in self._states.values())

    def __iter__(self) -> Iterator[str]:
        for state in list(self._states.values()):
            yield from state.done_ids()

    def __len__(self) -> int:
        return sum(s.done_count for s in self._states.values())


class DeferredView(Mapping[str, NotificationRequest]):
    """The deferred requests of every held partition, by notification id."""

    def __init__(self, states: Mapping[int, PartitionState]) -> None:
        self._states = states

    def __getitem__(self, nid: str) -> NotificationRequest:
        for state in self._states.values():
            if (raw := state.request_json(nid)) is not None:
                return NotificationRequest.model_validate_json(raw)
        raise KeyError(nid)

    def __contains__(self, nid: object) -> bool:
        return isinstance(nid, str) and any(s.state(nid) == "deferred" for s in self._states.values())

    def __iter__(self) -> Iterator[str]:
        for state in list(self._states.values()):
            yield from state.deferred_ids()

    def __len__(self) -> int:
        return sum(s.deferred_count for s in self._states.values())
