"""The expiring keys of a keyring on disk (ADR 0044): indexed on disk by time, none held in memory however many dead
letters name a new applicant, each forgotten at its expiry, after a restart too, and in a store an older reader kept
(soak audit: ~335 bytes of memory a letter for its 31 days, in intake and in notify; pure, no broker)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.privacy import disk_rows
from services.privacy import keyring as keyrings
from services.privacy.crypto import Erased
from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import Kept
from services.privacy.key_records import KeyUnknown
from services.privacy.key_tables import _Key, new_key
from services.privacy.keyring import Keyring
from services.privacy.store import key_messages
from tests.privacy.keys import KEK, NOW, PEPPER

pytestmark = pytest.mark.unit

EXPIRES = datetime(2027, 1, 1, tzinfo=UTC)
"""A dead letter's key of 2026-12-01 with 30 days' retention."""
KEPT = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")


def _index(ring: Keyring, tag: bytes) -> list[bytes]:
    """The rows of an index in the keyring's store, as written (`checkpoint` first for what is staged)."""
    return [row for row, _ in disk_rows.scan(ring._keys._db, tag)]  # type: ignore[attr-defined]


def _ring(table: DiskKeys, clock: list[datetime]) -> Keyring:
    return Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: clock[0], table=table)


def _letters(ring: Keyring, start: int, count: int) -> None:
    """`count` dead letters each naming a new applicant: their expiring key records read from the key topic, as
    intake's and notify's key stores read them, then checkpointed (what is staged written, as after every fetch)."""
    wrap = AESGCM(KEK)
    for i in range(start, start + count):
        key = new_key(wrap, "kek-1", ring.subject("cccd", f"0{i:011d}"), NOW, EXPIRES)
        for _, record_key, value in key_messages(key.records(), "ns"):
            ring.apply(record_key, value)
    ring.checkpoint({("ns.commune.keys.deadletters", 0): start + count})


PYDANTIC_CACHE = tracemalloc.Filter(False, "*/pydantic/main.py")
"""What `model_validate_json` allocates and keeps: the strings of pydantic's JSON cache (16,384 of them, a record's
ids among them), bounded, filling slowly as ids come."""


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Python's memory allocated since the start and still held but pydantic's JSON cache, on each call."""
    def held() -> int:
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces([PYDANTIC_CACHE])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    gc.collect()
    tracemalloc.start()
    try:
        yield held
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_dead_letters_keys(tmp_path: Path) -> None:
    """A keyring on disk, 100 subjects in memory, after 2,000 then 8,000 dead letters naming new applicants: the
    6,000 more take no more memory (before: a heap entry each, ~286 bytes, 1.7 MB here)."""
    ring = _ring(DiskKeys(tmp_path, cached=100), [NOW])
    try:
        _letters(ring, 0, 500)  # the cache full, and what the first records build once
        with traced() as held:
            _letters(ring, 500, 1_500)
            at_n = held()
            _letters(ring, 2_000, 6_000)
            at_4n = held()
        assert len(ring) == 8_000
        assert at_4n - at_n < 6_000 * 10, (at_n, at_4n)  # under 10 bytes a letter (the heap: ~286)
    finally:
        ring.close()


def test_a_kept_store_reopened_reads_no_expiring_key_into_memory_and_forgets_each_on_time(tmp_path: Path) -> None:
    """Reopened (a restart), a kept store of 20,000 dead letters' keys holds none of them in memory (before: the
    whole index was read back into the heap, ~5.6 MB here); at their expiry, not a moment before, each is forgotten,
    `EXPIRED_AT_ONCE` a call, and its row leaves the index."""
    clock = [NOW]
    ring = _ring(DiskKeys(tmp_path, cached=100, kept=KEPT), clock)
    _letters(ring, 0, 20_000)
    ring.close()
    with traced() as held:
        ring = _ring(DiskKeys(tmp_path, cached=100, kept=KEPT), clock)
        reopened = held()
    try:
        assert reopened < 200_000 and len(ring) == 20_000, reopened
        clock[0] = EXPIRES - timedelta(microseconds=1)
        assert ring.expire() == 0
        clock[0] = EXPIRES
        assert [ring.expire() for _ in range(4)] == [keyrings.EXPIRED_AT_ONCE] * 2 + [0, 0]
        ring.checkpoint({})
        assert len(ring) == 0 and not _index(ring, disk_rows.EXPIRIES)
    finally:
        ring.close()


def test_a_store_kept_by_the_older_reader_has_its_index_moved_and_its_keys_expire_on_time(tmp_path: Path) -> None:
    """A kept store of 6,000 dead letters' keys whose index is by key (`disk_rows.EXPIRING`, as readers before
    2026-12-06 wrote it, read whole into memory at each start, ~1.4 MB here): opened, its rows are moved to the index
    by time (none left in the old one), none is held in memory, and every key expires on time, as does a key made
    since."""
    clock = [NOW]
    table = DiskKeys(tmp_path, cached=2, kept=KEPT)
    for i in range(6_000):
        subject, key_id, expires_at = f"s-{i}", f"k-{i}", EXPIRES + timedelta(days=i % 3)
        table.put(subject, (_Key(key_id, bytes(32), NOW, expires_at),))
        table._stage(disk_rows.key_of(disk_rows.EXPIRING, subject, key_id), disk_rows.encode(expires_at))
    table.put("a", (_Key("k-a", bytes(32), NOW, None),))  # a permanent key: never in an index
    table.checkpoint({("keys", 0): 6_001})
    table.close()

    with traced() as held:
        ring = _ring(DiskKeys(tmp_path, cached=2, kept=KEPT), clock)
        reopened = held()
    try:
        assert reopened < 200_000, reopened
        assert (len(_index(ring, disk_rows.EXPIRING)), len(_index(ring, disk_rows.EXPIRIES))) == (0, 6_000)
        assert ring.offsets() == {("keys", 0): 6_001} and len(ring) == 6_001
        new_id = ring.key_for("dlq:2026-12-01", EXPIRES + timedelta(days=1))[0]
        for day, gone, left in ((0, 2_000, 4_002), (1, 2_001, 2_001), (2, 2_000, 1)):  # the new key went on day 1
            clock[0] = EXPIRES + timedelta(days=day) - timedelta(microseconds=1)
            assert ring.expire() == 0
            clock[0] += timedelta(microseconds=1)
            assert (ring.expire(), len(ring)) == (gone, left), day
        ring.checkpoint({})
        assert ring.key_ids("a") == ["k-a"] and not _index(ring, disk_rows.EXPIRIES)
        with pytest.raises(KeyUnknown):
            ring.dek("dlq:2026-12-01", new_id)
    finally:
        ring.close()


def test_a_row_left_stale_changes_nothing_when_its_time_comes(tmp_path: Path) -> None:
    """A row whose key is gone or expires later (a pending key lost with a restart, an expiry a later record changed)
    is taken off when due and forgets nothing; the key's own row still forgets it at its time."""
    clock = [NOW]
    table = DiskKeys(tmp_path, cached=2)
    ring = _ring(table, clock)
    try:
        key_id = ring.key_for("later", EXPIRES + timedelta(days=2))[0]
        table.expires("gone", "k-gone", EXPIRES)
        table.expires("later", key_id, EXPIRES)  # a row from before its expiry changed
        clock[0] = EXPIRES + timedelta(days=1)
        assert ring.expire() == 0 and ring.key_ids("later") == [key_id]
        clock[0] = EXPIRES + timedelta(days=2)
        assert ring.expire() == 1 and ring.key_ids("later") == []
        with pytest.raises(KeyUnknown):
            ring.dek("later", key_id)
        ring.checkpoint({})
        assert not _index(ring, disk_rows.EXPIRIES)
    finally:
        ring.close()


def test_an_erased_expiring_key_takes_its_row_with_it(tmp_path: Path) -> None:
    """A tombstone of a dead letter's key (an erasure) removes its row at once, not at its expiry."""
    ring = _ring(DiskKeys(tmp_path, cached=2), [NOW])
    try:
        _letters(ring, 0, 3)
        subject = ring.subject("cccd", f"0{1:011d}")
        (key_id,) = ring.key_ids(subject)
        ring.apply(f"{subject}/{key_id}".encode(), None)
        ring.checkpoint({})
        rows = [disk_rows.decode(row[9:]) for row in _index(ring, disk_rows.EXPIRIES)]
        assert len(rows) == 2 and [subject, key_id] not in rows
        with pytest.raises(Erased):
            ring.dek(subject, key_id)
    finally:
        ring.close()
