"""A subject's erasure mark reaches every key store, and a key-topic record that meets a bug stops none (ADR 0035;
issue 11: no input stops a worker). Through `KeyStore.apply_all`, as the store applies what it fetches."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from rocksdict import Rdict
from structlog.testing import capture_logs

from schemas.personal import ERASED_MARK, record_key
from services.common.settings import KafkaConnection
from services.privacy.crypto import Erased
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from services.privacy.rewrap import ALWAYS, _mark_time
from services.privacy.store import MARKS_UNREADABLE, UNREADABLE, KeyStore, is_mark
from tests.privacy import keys

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("key_table")]
TOPIC = "ns.commune.keys.applicants"
SUBJECT = "a-mark-subject"


def _consumed(key: bytes, value: bytes | None, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, key, value, None, len(key), len(value or b""), [])


def _store(ring: Keyring) -> KeyStore:
    return KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "ns", ring, client_id="tests-erasure-mark")


def _key_record(subject: str = SUBJECT) -> tuple[str, ConsumerRecord[bytes, bytes]]:
    """A key a writer made for `subject` (created now), as the record it wrote."""
    key_id, _, records = keys.keyring().key_for(subject)
    return key_id, _consumed(record_key(subject, key_id), encoded(records[0]), offset=1)


def _mark(**extra: object) -> ConsumerRecord[bytes, bytes]:
    value = {"subject": SUBJECT, "created_up_to": (keys.NOW + timedelta(minutes=1)).isoformat(), **extra}
    return _consumed(record_key(SUBJECT, ERASED_MARK), json.dumps(value).encode())


def _count(error: str) -> float:
    return UNREADABLE.labels("applicants", error)._value.get()


async def test_a_mark_with_a_member_a_newer_eraser_adds_still_erases_the_keys_it_covers() -> None:
    """Read strictly (`extra="forbid"`), a mark with one member more, a compatible change an eraser may ship first,
    was refused by every older key store: a key record of the subject written again after the erasure (a worker that
    had not read its tombstone) loaded there and opened the erased data. Read tolerantly, the mark covers it."""
    ring, (key_id, record) = keys.keyring(), _key_record()
    store, marks = _store(ring), MARKS_UNREADABLE._value.get()
    store.apply_all([_mark(reason="citizen request"), record])
    assert store.unreadable == 0 and MARKS_UNREADABLE._value.get() == marks
    with pytest.raises(Erased):
        ring.dek(SUBJECT, key_id)


async def test_an_unreadable_mark_is_counted_for_its_alert_and_the_store_goes_on() -> None:
    """A mark the store cannot read (damage) may leave an erasure undone in this process: it is counted apart
    (`commune_privacy_erasure_marks_unreadable_total`, ErasureMarkUnreadable) and the next record is applied."""
    ring = keys.keyring()
    other_id, other = _key_record("another-subject")
    store, marks = _store(ring), MARKS_UNREADABLE._value.get()
    store.apply_all([_consumed(record_key(SUBJECT, ERASED_MARK), b'{"subject": '), other])
    assert store.unreadable == 1 and MARKS_UNREADABLE._value.get() == marks + 1
    ring.dek("another-subject", other_id)
    assert is_mark(record_key(SUBJECT, ERASED_MARK)) and not is_mark(record_key(SUBJECT, other_id))


async def test_a_record_meeting_a_bug_is_skipped_counted_and_logged_without_its_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only `PrivacyError` was caught: any other exception from the keyring left `KeyStore.start` / `run`, and every
    restart read the record again (intake, notify, the gateway and the CLI in a crash loop). Now it is skipped as
    unreadable with `error="internal_error"` (InternalErrorDeadLetters), logged by type and place, and the store goes
    on with the next record."""
    ring = keys.keyring()
    key_id, record = _key_record()
    apply = ring.apply

    def buggy(key: bytes | None, value: bytes | None) -> None:
        if key is not None and key.endswith(b"/poison"):
            raise ValueError("CCCD 001099012345 in the message")
        apply(key, value)

    monkeypatch.setattr(ring, "apply", buggy)
    store, before = _store(ring), _count("internal_error")
    with capture_logs() as logs:
        store.apply_all([_consumed(record_key(SUBJECT, "poison"), b"{}"), record])
    assert store.unreadable == 1 and _count("internal_error") == before + 1
    ring.dek(SUBJECT, key_id)  # the record after it was applied
    (line,) = [e for e in logs if e["event"] == "privacy.key_record_unreadable"]
    assert line["error"].startswith("ValueError at ") and "001099012345" not in repr(logs)


async def test_keys_rewrap_reads_a_newer_mark_by_its_time_not_as_erasing_everything() -> None:
    """`keys rewrap` took a mark it could not read strictly as covering every key of its subject: a newer mark left
    the subject's keys made after the erasure (its new dossiers) un-rewrapped, unreadable once the old KEK went."""
    mark = _mark(reason="citizen request")
    assert _mark_time(SUBJECT, mark.value or b"") == keys.NOW + timedelta(minutes=1)
    assert _mark_time(SUBJECT, b'{"subject": ') is ALWAYS  # damaged: still read as covering everything


async def test_the_key_store_s_disk_failing_ends_the_reader_not_skips_the_record(monkeypatch: pytest.MonkeyPatch,
                                                                                 tmp_path: Path) -> None:
    """The keyring's table failing on its disk while a record is applied (RocksDB's own error, here a store whose
    CURRENT is damaged) raises `StoreFault`: before, the record was skipped as `internal_error` and its key missing
    from then on in this run (helper `disk`, 2026-12-06)."""
    store_dir = tmp_path / "keys"
    Rdict(str(store_dir)).close()
    (store_dir / "CURRENT").write_bytes(b"\x00garbage\n")
    with pytest.raises(Exception) as opened:  # (rocksdict raises a bare Exception)
        Rdict(str(store_dir))
    ring = keys.keyring()

    def failing(key: bytes | None, value: bytes | None) -> None:
        raise opened.value

    monkeypatch.setattr(ring, "apply", failing)
    store, before = _store(ring), _count("internal_error")
    _, record = _key_record()
    with pytest.raises(Exception, match="store failed") as raised:  # (its type below)
        store.apply_all([record])
    assert (type(raised.value).__name__, store.unreadable, _count("internal_error")) == ("StoreFault", 0, before)
