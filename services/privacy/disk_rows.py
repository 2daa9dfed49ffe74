"""The rows of a key store on disk (`disk.DiskKeys`, ADR 0034): a tag byte a kind of row, msgpack values, and the
remembered sets the keyring fills (erased and unreadable key ids, erasure marks), staged for the store's next batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping, MutableSet
from datetime import datetime

import msgspec
from rocksdict import Rdict

# record keys in the store: a tag byte, then the rest
KEYS, ERASED, UNREADABLE, MARKS, EXPIRING, OFFSETS, FENCEPOSTS = b"k", b"e", b"u", b"m", b"x", b"o", b"p"
EXPIRIES = b"t"
"""The keys that expire, by time (`disk_expiry`); `EXPIRING` is the index before it (by key, read whole at each start),
only read to be moved here."""
COUNT, FINGERPRINT, SAVED_AT, REREAD = b"!count", b"!fingerprint", b"!saved_at", b"!reread"
REFUSED_BY = b"!refused_by"
"""The `key_records.READER` that refused a key record here (`skipped(refused=True)`): another one reads all again."""

encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder().decode


def partition_of(key: bytes) -> tuple[str, int]:
    topic, _, partition = key[1:].decode().rpartition("\0")
    return topic, int(partition)


def key_of(tag: bytes, subject: str, key_id: str) -> bytes:
    return tag + encode((subject, key_id))  # any text in either (a record key read from the topic is any text)


def ids_of(key: bytes) -> tuple[str, str]:
    subject, key_id = decode(key[1:])
    return subject, key_id


def scan(db: Rdict, tag: bytes) -> Iterator[tuple[bytes, bytes]]:
    for key, value in db.items(from_key=tag):
        assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
        if not key.startswith(tag):
            return
        yield key, value


Stage = Callable[[bytes, bytes | None], None]


class Ids(MutableSet[tuple[str, str]]):
    """(subject, key id) pairs, in memory and staged for the store under `tag` (erased, unreadable keys: few, read
    back whole at start)."""

    def __init__(self, db: Rdict, tag: bytes, stage: Stage) -> None:
        self._stage, self._tag = stage, tag
        self._ids = {ids_of(key) for key, _ in scan(db, tag)}

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, value: tuple[str, str]) -> None:
        if value not in self._ids:
            self._ids.add(value)
            self._stage(key_of(self._tag, *value), b"")

    def discard(self, value: tuple[str, str]) -> None:
        if value in self._ids:
            self._ids.discard(value)
            self._stage(key_of(self._tag, *value), None)

    def forget_all(self) -> None:
        self._ids.clear()


class Marks(MutableMapping[str, datetime]):
    """Each erased subject's latest mark, in memory and staged for the store."""

    def __init__(self, db: Rdict, stage: Stage) -> None:
        self._stage = stage
        self._marks: dict[str, datetime] = {key[1:].decode(): decode(value) for key, value in scan(db, MARKS)}

    def __getitem__(self, subject: str) -> datetime:
        return self._marks[subject]

    def __setitem__(self, subject: str, value: datetime) -> None:
        self._marks[subject] = value
        self._stage(MARKS + subject.encode(), encode(value))

    def __delitem__(self, subject: str) -> None:
        del self._marks[subject]
        self._stage(MARKS + subject.encode(), None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

    def forget_all(self) -> None:
        self._marks.clear()

