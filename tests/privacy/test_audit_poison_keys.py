"""Audit (poison input, 2026-12-04): a key-topic record that stopped every key store reading it, instead of being
counted unreadable and skipped (`store.KeyStore._apply`, `keyring.Keyring.apply`'s contract). The audit's cases
(b03d896), with the record written as a foreign writer would: raw JSON, which our own model no longer builds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from schemas.personal import record_key
from services.common.settings import KafkaConnection
from services.privacy import crypto, disk_rows
from services.privacy import disk as disk_module
from services.privacy.crypto import Erased
from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import Kept
from services.privacy.key_records import KeyUnreadable
from services.privacy.key_tables import _Key
from services.privacy.keyring import Keyring
from services.privacy.store import UNREADABLE_NOW, KeyStore
from tests.privacy.keys import KEK, NOW, PEPPER

pytestmark = pytest.mark.unit
TOPIC = "ns.commune.keys.deadletters"
SUBJECT = "dlq:2026-12-02"


def _record(key_id: str, expires_at: str) -> bytes:
    """A dead-letter key record wrapped under the KEK the readers hold, its expiry as a writer put it."""
    return json.dumps({
        "subject": SUBJECT, "key_id": key_id, "kek_id": "kek-1",
        "wrapped": crypto.wrap(KEK, crypto.new_key(), SUBJECT, key_id),
        "created_at": "2026-12-01T08:00:00Z", "expires_at": expires_at}).encode()


def _consumed(key: bytes, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, 7, 0, 0, key, value, None, len(key), len(value), [])


@pytest.fixture(params=["memory", "disk"])
def clock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Keyring, list[datetime]]]:
    now = [NOW]
    table = DiskKeys(tmp_path, cached=3) if request.param == "disk" else None
    keyring = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: now[0], table=table)
    keyring.key_for("dlq:2026-12-01", NOW + timedelta(days=1))  # a day key: the expiry index holds one already
    yield keyring, now
    keyring.close()


def _store(ring: Keyring) -> KeyStore:
    return KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "ns", ring, client_id="tests-audit-expiry")


@pytest.mark.parametrize("expires_at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00",
                                        "2101-01-01T00:00:00Z", "1974-12-31T23:59:59Z"],
                         ids=["year-9999-west", "year-1-east", "after-2100", "before-1975"])
async def test_a_key_record_with_an_expiry_out_of_bounds_is_counted_and_skipped_not_raised(
        clock: tuple[Keyring, list[datetime]], expires_at: str) -> None:
    """`KeyRecord.expires_at` was a bare `datetime` (no 1975-2100 bound: `schemas.limits` promises that times within
    bounds cannot crash a service, and this one had none). One whose UTC instant `datetime` cannot hold was refused by
    msgpack when the on-disk table (ADR 0034) stored it (OverflowError), not a PrivacyError, so `KeyStore._apply` let it
    out of `start` / `run`, and every restart read it again: intake, notify, the gateway and the CLI stopped. Now the
    schema refuses it: counted unreadable and skipped as a record under an unknown KEK is, its key held unreadable
    (never taken for erased), and the store goes on."""
    ring, _ = clock
    store, key_id = _store(ring), crypto.new_key_id()
    store.apply_all([_consumed(record_key(SUBJECT, key_id), _record(key_id, expires_at))])
    ring.expire()  # what `KeyStore.run` does at most once a minute
    assert store.unreadable == 1 and ring.unreadable_keys() == 1
    assert UNREADABLE_NOW._value.get() == 1, "the gauge behind KeyRecordsUnreadable counts it"
    with pytest.raises(KeyUnreadable):
        ring.dek(SUBJECT, key_id)


async def test_a_key_record_with_an_expiry_without_offset_is_read_as_vietnam_time(
        clock: tuple[Keyring, list[datetime]]) -> None:
    """An expiry without an offset met the aware ones in the expiry heap (TypeError, out of the key store): now it is
    read as every time without an offset is (`schemas.times.UtcDateTime`, as the record's `created_at` always was):
    Vietnam time, so the key opens until 2027-01-01 00:00 in Hanoi (17:00 UTC the day before), then expires."""
    ring, now = clock
    store, key_id = _store(ring), crypto.new_key_id()
    store.apply_all([_consumed(record_key(SUBJECT, key_id), _record(key_id, "2027-01-01T00:00:00"))])
    assert store.unreadable == 0 and ring.expire() == 0
    ring.dek(SUBJECT, key_id)
    now[0] = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    assert ring.expire() == 2  # with the day key made at the start
    with pytest.raises(Erased):
        ring.dek(SUBJECT, key_id)


@pytest.mark.parametrize("expires_at", [datetime(2027, 1, 1), datetime(9000, 1, 1, tzinfo=UTC)],
                         ids=["naive", "year-9000"])
def test_a_kept_store_holding_an_expiry_a_reader_before_the_bound_let_in_starts_over(
        tmp_path: Path, expires_at: datetime) -> None:
    """A service that crash-looped on a naive expiry with `PRIVACY_STATE_DIR` set had it written to its kept store
    (staged before the heap raised, flushed at close): read back, it met the aware expiries again (TypeError at the
    keyring's start or its first sweep), so the upgrade alone did not end the loop. Such a store, or one holding an
    expiry the bound now refuses, is started over (the key topics read whole again) as a damaged one is."""
    kept = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")
    table = DiskKeys(tmp_path, cached=2, kept=kept)
    old = (("dlq:2026-12-01", "k-day", NOW + timedelta(days=1)), (SUBJECT, "k-poison", expires_at))
    for subject, key_id, at in old:
        table.put(subject, (_Key(key_id, bytes(32), NOW, at),))  # what the old reader stored, its index by key too
        table._stage(disk_rows.key_of(disk_rows.EXPIRING, subject, key_id), disk_rows.encode(at))
    for subject in ("a-1", "a-2"):
        table.put(subject, (_Key(f"k-{subject}", bytes(32), NOW, None),))
    table.checkpoint({(TOPIC, 0): 8})
    table.close()
    ring = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: NOW + timedelta(days=2),
                   table=DiskKeys(tmp_path, cached=2, kept=kept))
    try:
        assert (ring.offsets(), len(ring), ring.expire()) == ({}, 0, 0)
    finally:
        ring.close()


APPLICANTS = "ns.commune.keys.applicants"


def _kept(folder: Path) -> Keyring:
    return Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: NOW,
                   table=DiskKeys(folder, cached=2, kept=Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")))


def _skipped_once(folder: Path, topic: str, key: bytes, value: bytes) -> KeyStore:
    """A kept keyring that read a readable key record and then `value` on `topic`, checkpointed and closed."""
    ring = _kept(folder)
    store = _store(ring)
    readable = _record("k-good", "2026-12-31T00:00:00Z")
    store.apply_all([ConsumerRecord(t, 0, 0, 0, 0, k, v, None, len(k), len(v), [])
                     for t, k, v in ((TOPIC, record_key(SUBJECT, "k-good"), readable), (topic, key, value))])
    ring.checkpoint({(APPLICANTS, 0): 1, (TOPIC, 0): 1})
    ring.close()
    return store


async def test_a_key_record_refused_on_the_compacted_topic_is_remembered_not_read_again_at_every_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: a record that can never be read left a kept store's "read again" flag set for good, so every start of
    every service read both key topics whole (minutes a year of keys), for as long as the compacted topic kept it.
    Refused by its bytes (`RecordRefused`) it is refused by every read of this reader alike: the store remembers the
    reader that refused it and goes on from its offsets, the key still held unreadable (the gauge, KeyRecordsUnreadable
    and `dek` say so as after a full read); another reader (a schema widened by an upgrade) reads everything again."""
    key_id = "k-refused"
    store = _skipped_once(tmp_path, APPLICANTS, record_key("a-x", key_id), b'{"subject": "a-x", "key_id": 7}')
    assert store.unreadable == 1
    again = _kept(tmp_path)
    try:
        assert again.offsets() == {(APPLICANTS, 0): 1, (TOPIC, 0): 1}
        assert (len(again), again.unreadable_keys()) == (1, 1)
        with pytest.raises(KeyUnreadable):
            again.dek("a-x", key_id)
    finally:
        again.close()
    monkeypatch.setattr(disk_module, "READER", b"another reader")
    upgraded = _kept(tmp_path)
    try:
        assert upgraded.offsets() == {}
    finally:
        upgraded.close()


@pytest.mark.parametrize("where", ["dead-letter key refused", "unknown KEK", "mark refused"])
async def test_any_other_record_skipped_is_given_another_chance_by_a_full_read(tmp_path: Path, where: str) -> None:
    """A KEK may be given since, an erasure mark must never stay unapplied on a guess, and a dead letter's key leaves
    its topic with its retention (the store then holds nothing unreadable the topics do not): each of those records
    still makes the next start read the topics whole (ADR 0034)."""
    topic, key, value = {
        "dead-letter key refused": (TOPIC, record_key(SUBJECT, "k-bad"), _record("k-bad", "2101-01-01T00:00:00Z")),
        "unknown KEK": (APPLICANTS, record_key(SUBJECT, "k-kek"),
                        _record("k-kek", "2026-12-31T00:00:00Z").replace(b'"kek-1"', b'"kek-9"')),
        "mark refused": (APPLICANTS, record_key("a-x", "~erased"), b'{"subject": "a-x", "created_up_to": "2101"}'),
    }[where]
    assert _skipped_once(tmp_path, topic, key, value).unreadable == 1
    again = _kept(tmp_path)
    try:
        assert again.offsets() == {}
    finally:
        again.close()
