"""Where a keyring holds its keys (`KeyTable`): per subject a tuple of `_Key`, in memory (`MemoryKeys`) or in
RocksDB (`services.privacy.disk`), with what the keyring remembers besides them (`Remembered`)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, MutableMapping, MutableSet
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.envelope import built
from schemas.personal import KeyRecord
from services.privacy import crypto


@dataclass(slots=True, eq=False)
class _Key:
    """A data key as a keyring holds it: plain values, not its parsed record (a pydantic model, ~1.5 KB a key)."""

    key_id: str
    dek: bytes
    created_at: datetime
    expires_at: datetime | None
    record: KeyRecord | None = None
    """Its record while pending (made here, not read back yet): returned with every use; None once confirmed."""
    digest: bytes | None = None
    """For a key made here: a digest of its record's bytes as read back and checked (`apply`), so later copies are
    not parsed (the bytes themselves, ~330, were a keyring's largest part once the rest was plain values)."""
    aead: AESGCM | None = None
    """Built on use, kept for the `keyring.CIPHERS_KEPT` keys built last."""

    def records(self) -> list[KeyRecord]:
        return [] if self.record is None else [self.record]


_RECORD_FIELDS = frozenset(KeyRecord.model_fields)


def new_key(kek: AESGCM, kek_id: str, subject: str, created_at: datetime, expires_at: datetime | None) -> _Key:
    """A data key made now, pending: its record (wrapped under `kek`) goes with every use until read back."""
    key_id, dek = crypto.new_key_id(), crypto.new_key()
    # built, not validated: every value is ours (a subject id, random ids, base64url), and it is the hot path
    record = built(KeyRecord, _RECORD_FIELDS, {
        "subject": subject, "key_id": key_id, "kek_id": kek_id, "wrapped": crypto.wrap(kek, dek, subject, key_id),
        "created_at": created_at, "expires_at": expires_at})
    return _Key(key_id, dek, created_at, expires_at, record=record)


class KeyTable(Protocol):
    """Where a keyring holds its keys, per subject (never an empty tuple): `MemoryKeys`, or `services.privacy.disk`'s
    RocksDB store with the keys used last in memory. A table may hand out a new `_Key` for a subject at each `get`
    (read from disk again), so the keyring `put`s a subject's keys again after changing one."""

    def get(self, subject: str) -> tuple[_Key, ...] | None: ...

    def put(self, subject: str, keys: tuple[_Key, ...]) -> None: ...

    def pop(self, subject: str) -> tuple[_Key, ...]: ...

    def count(self) -> int: ...

    def erased(self) -> MutableSet[tuple[str, str]]:
        """The erased keys' (subject, key id), held by the table (a table on disk keeps them across restarts)."""

    def unreadable(self) -> MutableSet[tuple[str, str]]: ...

    def marks(self) -> MutableMapping[str, datetime]: ...

    def expires(self, subject: str, key_id: str, at: datetime) -> None:
        """`subject`'s key `key_id` expires at `at` (made here, or its record read): indexed for `due`."""

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` keys indexed to expire at or before `now`, earliest first, taken off the index; the keyring
        forgets each that is still held and due (an entry can be stale: its key gone, or its expiry changed since)."""

    def offsets(self) -> dict[tuple[str, int], int]:
        """The key topics' offsets the table holds every record before applied (none: read from the beginning)."""

    def checkpoint(self, offsets: Mapping[tuple[str, int], int],
                   fenceposts: Mapping[tuple[str, int], tuple[int, bytes]] | None = None) -> None: ...

    def skipped(self, refused: bool = False) -> None: ...

    def shred(self, subject: str) -> None:
        """`subject` lost a key to an erasure: a table on disk removes the old copies of its row from its files."""

    def fenceposts(self) -> dict[tuple[str, int], tuple[int, bytes]]:
        """Per key-topic partition, the offset and digest of the last record applied (see `store.KeyStore.start`)."""

    def clear(self) -> None: ...

    def close(self) -> None: ...


class Remembered:
    """What a table holds besides its keys, for the keyring to fill: `_erased`, `_unreadable`, `_marks` (set by the
    table's `__init__`: sets and a dict in memory, or written through to a store on disk)."""

    _erased: MutableSet[tuple[str, str]]
    _unreadable: MutableSet[tuple[str, str]]
    _marks: MutableMapping[str, datetime]

    def erased(self) -> MutableSet[tuple[str, str]]:
        return self._erased

    def unreadable(self) -> MutableSet[tuple[str, str]]:
        return self._unreadable

    def marks(self) -> MutableMapping[str, datetime]:
        return self._marks


class MemoryKeys(Remembered):
    """Every key in a dict: tests, and short-lived readers. A service's keyring grows with the country (ADR 0034).
    Per subject a tuple (nearly always of one key: a tuple costs far less than a dict per subject)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[_Key, ...]] = {}
        self._erased: set[tuple[str, str]] = set()
        self._unreadable: set[tuple[str, str]] = set()
        self._marks: dict[str, datetime] = {}
        self._expiring: list[tuple[datetime, str, str]] = []
        """The keys that expire, by time (a heap): the few a reader in memory holds; a service's table (on disk)
        keeps its index there, as memory would grow with every dead letter's key (`disk_expiry`)."""

    def get(self, subject: str) -> tuple[_Key, ...] | None:
        return self._keys.get(subject)

    def put(self, subject: str, keys: tuple[_Key, ...]) -> None:
        self._keys[subject] = keys

    def pop(self, subject: str) -> tuple[_Key, ...]:
        return self._keys.pop(subject, ())

    def count(self) -> int:
        return sum(len(keys) for keys in self._keys.values())

    def expires(self, subject: str, key_id: str, at: datetime) -> None:
        heapq.heappush(self._expiring, (at, subject, key_id))

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        taken: list[tuple[str, str]] = []
        while self._expiring and self._expiring[0][0] <= now and len(taken) < limit:
            _, subject, key_id = heapq.heappop(self._expiring)
            taken.append((subject, key_id))
        return taken

    def offsets(self) -> dict[tuple[str, int], int]:
        return {}

    def checkpoint(self, offsets: Mapping[tuple[str, int], int],
                   fenceposts: Mapping[tuple[str, int], tuple[int, bytes]] | None = None) -> None:
        pass

    def skipped(self, refused: bool = False) -> None:
        pass

    def shred(self, subject: str) -> None:
        pass

    def fenceposts(self) -> dict[tuple[str, int], tuple[int, bytes]]:
        return {}

    def clear(self) -> None:
        self._keys.clear()
        self._erased.clear()
        self._unreadable.clear()
        self._marks.clear()
        self._expiring.clear()

    def close(self) -> None:
        self.clear()
