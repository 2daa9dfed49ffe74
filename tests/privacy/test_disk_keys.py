"""The keyring's keys on disk (ADR 0034): memory bounded, pending keys kept, erasures reaching the disk (pure, no
broker; the keyring's own tests run on both tables too, `key_table`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, record_key
from services.privacy import crypto
from services.privacy import disk as disk_module
from services.privacy.crypto import Erased
from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import KEPT_PREFIX, PREFIX, Kept
from services.privacy.disk_rows import KEYS, scan
from services.privacy.key_records import KeyUnknown, encoded
from services.privacy.keyring import Keyring
from tests.privacy.keys import KEK, NOW, PEPPER
from tests.privacy.keys import settings as privacy_settings

pytestmark = pytest.mark.unit

AAD = b"test"


def ring(table: DiskKeys | None = None, clock: list | None = None) -> Keyring:
    now = clock if clock is not None else [NOW]
    return Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: now[0], table=table)


@pytest.fixture
def table(tmp_path: Path) -> Iterator[DiskKeys]:
    keys = DiskKeys(tmp_path, cached=3)
    yield keys
    keys.close()


def confirm(writer: Keyring, readers: list[Keyring], subject: str, expires_at=None) -> tuple[str, bytes]:
    """A key made by `writer` for `subject`, its record applied to `readers` (and the writer): (key id, a value
    sealed under it)."""
    key_id, aead, records = writer.key_for(subject, expires_at)
    value = crypto.seal(aead, subject.encode(), AAD)
    for record in records:
        for keyring in (writer, *readers):
            keyring.apply(record.record_key, encoded(record))
    return key_id, value


def test_memory_holds_only_the_subjects_used_last(table: DiskKeys) -> None:
    """40 subjects confirmed, 3 in memory; every value opens (read back from disk), and the count is exact."""
    keyring = ring(table)
    first_id, first_value = confirm(keyring, [], "s-0")
    first = keyring._find("s-0", first_id)
    assert first is not None and first.dek
    sealed = {"s-0": (first_id, first_value), **{f"s-{i}": confirm(keyring, [], f"s-{i}") for i in range(1, 40)}}
    assert table.in_memory() == 3 and len(keyring) == 40
    assert (first.dek, first.aead) == (b"", None)  # evicted: out of memory, read back from disk at its next use
    for subject, (key_id, value) in sealed.items():
        assert crypto.open_sealed(keyring.dek(subject, key_id), value, AAD) == subject.encode()
        assert keyring.key_ids(subject) == [key_id]
        assert keyring.key_for(subject)[0] == key_id  # its one key, not a new one
    assert table.in_memory() == 3 and len(keyring) == 40


def test_a_pending_key_is_never_evicted(table: DiskKeys) -> None:
    """Keys made and not read back yet stay in memory, records and all, however many: each use hands its record
    out again (an eviction would lose it, and a value sealed under it in an aborted transaction could never open)."""
    keyring = ring(table)
    made = {f"s-{i}": keyring.key_for(f"s-{i}") for i in range(10)}
    assert table.in_memory() == 10
    for subject, (key_id, _, records) in made.items():
        again_id, _, again = keyring.key_for(subject)
        assert again_id == key_id and again == records and len(records) == 1
    subject, (key_id, _, records) = next(iter(made.items()))
    keyring.apply(records[0].record_key, encoded(records[0]))  # confirmed: now it may leave memory
    assert keyring.key_for(subject)[2] == []
    for i in range(10, 20):
        confirm(keyring, [], f"s-{i}")
    assert keyring.key_for(subject)[0] == key_id and keyring.key_for(subject)[2] == []


def test_erasure_reaches_keys_on_disk_only(table: DiskKeys) -> None:
    """A tombstone and a subject's mark, read while the subject's keys are on disk only: gone from the store."""
    keyring, clock = ring(table), [NOW]
    tomb_id, _ = confirm(keyring, [], "tomb")
    marked_id, _ = confirm(keyring, [], "marked")
    for i in range(10):
        confirm(keyring, [], f"other-{i}")
    keyring.apply(record_key("tomb", tomb_id), None)
    mark = ErasureMark(subject="marked", created_up_to=clock[0] + timedelta(minutes=5))
    keyring.apply(record_key("marked", ERASED_MARK), mark.model_dump_json().encode())
    with pytest.raises(Erased):
        keyring.dek("tomb", tomb_id)
    with pytest.raises(Erased):
        keyring.dek("marked", marked_id)
    assert table.get("tomb") is None and table.get("marked") is None and len(keyring) == 10
    assert keyring.key_for("marked")[0] != marked_id  # new data: a new key, after the mark


def test_expired_keys_on_disk_are_forgotten(table: DiskKeys) -> None:
    """An expiring key (a dead letter's) evicted to disk is forgotten at its expiry, as in memory."""
    clock = [NOW]
    keyring = ring(table, clock)
    key_id, _ = confirm(keyring, [], "letter", expires_at=NOW + timedelta(days=1))
    for i in range(10):
        confirm(keyring, [], f"other-{i}")
    clock[0] = NOW + timedelta(days=2)
    assert keyring.expire() == 1
    assert table.get("letter") is None and len(keyring) == 10
    with pytest.raises(KeyUnknown):
        keyring.dek("letter", key_id)


def test_the_disk_holds_no_data_key(table: DiskKeys, tmp_path: Path) -> None:
    """Every file of the store lacks the data keys: each is sealed under a key of the run that only memory holds."""
    keyring = ring(table)
    deks = []
    for i in range(50):
        key_id, _ = confirm(keyring, [], f"s-{i}")
        deks.append(keyring._find(f"s-{i}", key_id).dek)  # type: ignore[union-attr]
    table.checkpoint({})  # what is staged into the store
    table._db.flush()  # memtable to an SST file
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    data = b"".join(p.read_bytes() for p in files)
    assert any(p.suffix == ".sst" for p in files) and len(data) > 0
    assert not [dek for dek in deks if dek in data]
    nonces = [sealed[:12] for _, raw in scan(table._db, KEYS) for *_, sealed in msgspec.msgpack.decode(raw)]
    assert len(nonces) == 50 and len(set(nonces)) == 50  # never one twice under the store's key


def test_close_removes_the_folder(tmp_path: Path) -> None:
    keys = DiskKeys(tmp_path, cached=1)
    confirm(ring(keys), [], "s")
    assert [p for p in tmp_path.iterdir() if p.name.startswith(PREFIX)]
    keys.close()
    keys.close()  # twice is harmless (a failed start closes, then the stop again)
    assert not list(tmp_path.iterdir())


def test_the_service_keyring_is_kept_under_the_state_dir_and_refuses_a_bad_key_first(tmp_path: Path) -> None:
    """With `PRIVACY_STATE_DIR`, `service_keyring` keeps its store there under its name, across its closing; a KEK
    refused makes no folder."""
    bad = privacy_settings().model_copy(update={"state_dir": tmp_path, "kek": None})
    with pytest.raises(crypto.PrivacyError):
        bad.service_keyring("ns-intake-1")
    assert not list(tmp_path.iterdir())
    keyring = privacy_settings().model_copy(update={"state_dir": tmp_path, "keys_cached": 5}).service_keyring(
        "ns-intake-1")
    keyring.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEPT_PREFIX}ns-intake-1", f"{KEPT_PREFIX}ns-intake-1.lock"]


def kept_ring(folder: Path, keks: dict[str, bytes] | None = None, clock: list | None = None) -> Keyring:
    keks = keks or {"kek-1": KEK}
    now = clock if clock is not None else [NOW]
    return Keyring(keks, "kek-1", PEPPER, clock=lambda: now[0],
                   table=DiskKeys(folder, cached=2, kept=Kept.of("ns-tests", keks, "kek-1")))


def test_a_kept_store_holds_everything_the_keyring_knew_across_a_restart(tmp_path: Path) -> None:
    """Keys, an erased key (its copy read again stays refused), a subject's mark, an expiring key (it expires on
    time after the restart), a record it could not read, the offsets and the count: all there after a close."""
    clock = [NOW]
    writer, first = ring(clock=clock), kept_ring(tmp_path, clock=clock)
    sealed = {f"s-{i}": confirm(writer, [first], f"s-{i}") for i in range(6)}
    tomb_id, _ = sealed["s-0"]
    first.apply(record_key("s-0", tomb_id), None)
    mark = ErasureMark(subject="s-1", created_up_to=NOW + timedelta(minutes=5))
    first.apply(record_key("s-1", ERASED_MARK), mark.model_dump_json().encode())
    letter_id, _ = confirm(writer, [first], "letter", expires_at=NOW + timedelta(days=1))
    with pytest.raises(crypto.PrivacyError):
        first.apply(record_key("s-9", "k-bad"), b"not json")
    first.checkpoint({("keys", 0): 42, ("keys", 1): 7})
    assert (len(first), first.unreadable_keys()) == (5, 1)
    first.close()

    second = kept_ring(tmp_path, clock=clock)
    try:
        assert second.offsets() == {("keys", 0): 42, ("keys", 1): 7}
        assert (len(second), second.unreadable_keys()) == (5, 1)
        for subject in ("s-2", "s-3", "s-4", "s-5"):
            key_id, value = sealed[subject]
            assert crypto.open_sealed(second.dek(subject, key_id), value, AAD) == subject.encode()
        for subject in ("s-0", "s-1"):
            with pytest.raises(Erased):
                second.dek(subject, sealed[subject][0])
        old_record = KeyRecord.model_validate({"subject": "s-1", "key_id": "k-old", "kek_id": "kek-1",
                                               "wrapped": crypto.wrap(KEK, bytes(32), "s-1", "k-old"),
                                               "created_at": NOW})
        second.apply(old_record.record_key, encoded(old_record))  # made before the mark: refused
        assert second.key_ids("s-1") == []
        clock[0] = NOW + timedelta(days=2)
        assert second.expire() == 1 and second.key_ids("letter") == [] and letter_id
    finally:
        second.close()


def test_a_kept_store_starts_over_under_other_keks_and_is_held_by_one_process(tmp_path: Path) -> None:
    first = kept_ring(tmp_path)
    confirm(ring(), [first], "s")
    first.checkpoint({("keys", 0): 3})
    busy = DiskKeys(tmp_path, cached=2, kept=Kept.of("ns-tests", {"kek-1": KEK}, "kek-1"))
    try:
        assert not busy.kept and busy.offsets() == {} and busy.count() == 0  # held: a folder of its run instead
    finally:
        busy.close()
    first.close()
    assert kept_ring(tmp_path).offsets() == {("keys", 0): 3}
    other = kept_ring(tmp_path, keks={"kek-1": KEK, "kek-0": bytes(32)})
    try:
        assert other.offsets() == {} and len(other) == 0
    finally:
        other.close()


def test_a_cleared_store_is_empty(tmp_path: Path) -> None:
    keyring = kept_ring(tmp_path)
    key_id, _ = confirm(ring(), [keyring], "s")
    keyring.apply(record_key("s", key_id), None)
    confirm(ring(), [keyring], "t")
    keyring.checkpoint({("keys", 0): 3})
    keyring.clear()
    try:
        assert (len(keyring), keyring.offsets(), keyring.key_ids("t")) == (0, {}, [])
        with pytest.raises(KeyUnknown):  # no longer remembered as erased: the topics are read again
            keyring.dek("s", key_id)
    finally:
        keyring.close()
    reopened = kept_ring(tmp_path)
    try:
        assert (len(reopened), reopened.offsets()) == (0, {})
    finally:
        reopened.close()


# --- the same record stream into a keyring in memory and one on disk: the same answers ---------------------------

SUBJECTS = [f"sub-{i}" for i in range(6)]
OPS = st.lists(st.one_of(
    st.tuples(st.just("make"), st.sampled_from(SUBJECTS), st.booleans()),  # the writer makes a key (expiring?)
    st.tuples(st.just("confirm"), st.integers(0, 50), st.booleans()),  # a record read back (twice?)
    st.tuples(st.just("tombstone"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("mark"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(st.just("time"), st.integers(0, 3), st.booleans()),  # days pass, then expiry
), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, cached=st.integers(1, 3))
def test_on_disk_answers_as_in_memory(tmp_path: Path, ops: list[tuple[str, object, bool]], cached: int) -> None:
    """Keys made, confirmed (copies too), tombstoned, erased by mark and expired, in any order: a reader on disk with
    1-3 subjects in memory answers every question as a reader in memory does."""
    clock = [NOW]
    writer = ring(clock=clock)
    disk = DiskKeys(tmp_path, cached=cached)
    memory, on_disk = ring(clock=clock), ring(disk, clock)
    made: list = []
    try:
        for op, arg, flag in ops:
            if op == "make":
                _, _, records = writer.key_for(str(arg), clock[0] + timedelta(days=1) if flag else None)
                made.extend(records)
            elif op in ("confirm", "tombstone") and made:
                record = made[int(str(arg)) % len(made)]
                value = encoded(record) if op == "confirm" else None
                for reader in (memory, on_disk, writer):
                    for _ in range(2 if flag else 1):
                        reader.apply(record.record_key, value)
            elif op == "mark":
                mark = ErasureMark(subject=str(arg), created_up_to=clock[0])
                for reader in (memory, on_disk, writer):
                    reader.apply(record_key(str(arg), ERASED_MARK), mark.model_dump_json().encode())
            elif op == "time":
                clock[0] += timedelta(days=int(str(arg)), seconds=1)
                assert memory.expire() == on_disk.expire()
            assert len(memory) == len(on_disk)
            assert disk.in_memory() <= cached + len(disk._pinned)
        for subject in SUBJECTS:
            assert memory.key_ids(subject) == on_disk.key_ids(subject)
        for record in made:
            assert _same(memory, on_disk, record.subject, record.key_id)
    finally:
        disk.close()


def _same(one: Keyring, other: Keyring, subject: str, key_id: str) -> bool:
    """Both refuse the key for the same reason, or both hold it: a value sealed by one opens with the other."""
    answers = []
    for keyring in (one, other):
        try:
            answers.append(keyring.dek(subject, key_id))
        except Erased as exc:
            answers.append(type(exc).__name__)
    first, second = answers
    if isinstance(first, str) or isinstance(second, str):
        return first == second
    return crypto.open_sealed(second, crypto.seal(first, b"x", AAD), AAD) == b"x"


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from tests.privacy.test_disk_keys import confirm, kept_ring, ring
folder = Path(sys.argv[1])
writer, kept = ring(), kept_ring(folder)
for i in range(1, 40_501):  # the last 500 staged, never written: lost with the kill
    confirm(writer, [kept], f"s-{i}")
    if i % 1_000 == 0:
        kept.checkpoint({("keys", 0): i})
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kept_store_killed_mid_write_keeps_every_batch_written(tmp_path: Path) -> None:
    """SIGKILL mid-write: a kept store writes its log, so every batch written is there (without it, everything since
    the last memtable flush was lost: a worker killed soon after its start kept nothing), the offsets no further than
    the keys, the count exact, and what was staged after the last checkpoint is simply read again."""
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], check=False, timeout=300)
    assert done.returncode == -signal.SIGKILL
    keyring = kept_ring(tmp_path)
    try:
        offset = keyring.offsets().get(("keys", 0), 0)
        stored = sum(1 for _ in scan(keyring._keys._db, KEYS))  # type: ignore[attr-defined]
        assert len(keyring) == stored
        assert offset == stored == 40_000, (offset, stored)
        assert all(keyring.key_ids(f"s-{i}") for i in range(1, stored + 1))
    finally:
        keyring.close()


def test_a_kept_store_is_read_again_when_stale_or_after_skipping_a_record(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Not written for longer than the key topic keeps tombstones, or having skipped a record it could not read: no
    offsets to go on from (the key store then clears it and reads the topics whole)."""
    keyring = kept_ring(tmp_path)
    confirm(ring(), [keyring], "s")
    keyring.checkpoint({("keys", 0): 1})
    keyring.close()
    later = time.time() + disk_module.KEPT_FOR_S + 60
    monkeypatch.setattr(disk_module.time, "time", lambda: later)
    stale = kept_ring(tmp_path)
    try:
        assert stale.offsets() == {} and stale.fenceposts() == {} and len(stale) == 1
    finally:
        stale.close()
    monkeypatch.undo()
    keyring = kept_ring(tmp_path)
    assert keyring.offsets() == {("keys", 0): 1}
    with pytest.raises(crypto.PrivacyError):
        keyring.apply(record_key("t", "k-1"), b"not json")
    keyring.skipped()  # as the key store does for a record it could not read
    keyring.checkpoint({("keys", 0): 2})
    keyring.close()
    again = kept_ring(tmp_path)
    try:
        assert again.offsets() == {}
        again.clear()
        again.checkpoint({("keys", 0): 2})
        assert again.offsets() == {("keys", 0): 2} and len(again) == 0
    finally:
        again.close()


def test_an_erased_key_leaves_the_kept_stores_files_at_once(tmp_path: Path) -> None:
    """Sealed under a key derived from the KEK, an erased key's old row must not wait for some compaction (review: it
    was recovered from an SST file with the KEK alone): the row is compacted away with the write that erases it."""
    writer, keyring = ring(), kept_ring(tmp_path)
    key_id, _ = confirm(writer, [keyring], "s")
    other_id, _ = confirm(writer, [keyring], "t")
    keyring.checkpoint({("keys", 0): 2})
    keyring._keys._db.flush()  # type: ignore[attr-defined]  # the row in an SST file
    row = keyring._keys._db.get(KEYS + b"s")  # type: ignore[attr-defined]
    assert row is not None and _in_files(tmp_path, row)
    keyring.apply(record_key("s", key_id), None)
    keyring.checkpoint({("keys", 0): 3})
    try:
        assert not _in_files(tmp_path, row) and keyring.key_ids("t") == [other_id]
    finally:
        keyring.close()


def test_a_kept_store_read_again_leaves_no_old_row_in_its_files(tmp_path: Path) -> None:
    """A kept store read whole again (stale, other offsets, a record skipped) is cleared first: its old rows, openable
    with the KEK, must leave the files then, not at some compaction. Read again after an erasure whose tombstone
    compaction removed, the subject's mark meets no key in the cleared table, so nothing else shreds its row."""
    writer, keyring = ring(), kept_ring(tmp_path)
    key_id, _ = confirm(writer, [keyring], "s")
    keyring.checkpoint({("keys", 0): 1})
    keyring._keys._db.flush()  # type: ignore[attr-defined]  # the row in an SST file
    row = keyring._keys._db.get(KEYS + b"s")  # type: ignore[attr-defined]
    assert row is not None and _in_files(tmp_path, row)
    keyring.clear()  # what `KeyStore.start` does before reading the topics from the beginning
    mark = ErasureMark(subject="s", created_up_to=NOW + timedelta(minutes=5))
    keyring.apply(record_key("s", ERASED_MARK), mark.model_dump_json().encode())  # the tombstone compacted away
    keyring.checkpoint({("keys", 0): 2})
    try:
        with pytest.raises(Erased):
            keyring.dek("s", key_id)
        assert not _in_files(tmp_path, row)
    finally:
        keyring.close()


def _in_files(folder: Path, data: bytes) -> bool:
    return any(data in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_run_folders_left_by_killed_processes_are_swept_by_a_kept_store_too(tmp_path: Path) -> None:
    """A process that fell back to a folder of its run (the kept one busy) and was killed left its copy of every key:
    the next store to open, kept or not, removes it."""
    (tmp_path / f"{PREFIX}999999-dead").mkdir()
    (tmp_path / f"{PREFIX}999999-dead.alive").touch()  # a lock file nobody holds
    keyring = kept_ring(tmp_path)
    try:
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(PREFIX)]
    finally:
        keyring.close()


def test_a_kept_store_caught_up_but_idle_is_not_taken_for_stale(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A service reading no new key record for a day still checkpoints: the time it was caught up is written again
    every `SAVED_EVERY_S`, so a restart goes on from its offsets."""
    now = [time.time()]
    monkeypatch.setattr(disk_module.time, "time", lambda: now[0])
    keyring = kept_ring(tmp_path)
    confirm(ring(), [keyring], "s")
    for _ in range(24):  # a quiet day: the same offsets each hour
        keyring.checkpoint({("keys", 0): 1})
        now[0] += disk_module.SAVED_EVERY_S + 1
    keyring.close()
    again = kept_ring(tmp_path)
    try:
        assert again.offsets() == {("keys", 0): 1}
    finally:
        again.close()


def test_a_kept_store_saved_under_a_clock_running_ahead_is_not_taken_for_fresh(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved while the clock ran two days fast, then stopped 30 h while the clock was put right: its age is unknown
    (its time of being caught up lies 18 h ahead), so it is read again; a store still running when the clock steps
    back writes that time again at its next checkpoint, so a restart then goes on from its offsets."""
    true_now = time.time()
    now = [true_now + 48 * 3600]
    monkeypatch.setattr(disk_module.time, "time", lambda: now[0])
    keyring = kept_ring(tmp_path)
    confirm(ring(), [keyring], "s")
    keyring.checkpoint({("keys", 0): 1})
    keyring.close()
    now[0] = true_now + 30 * 3600
    stale = kept_ring(tmp_path)
    try:
        assert stale.offsets() == {}
        stale.clear()
        stale.checkpoint({("keys", 0): 1})
        now[0] -= 24 * 3600  # the clock stepped back a day while it runs
        stale.checkpoint({("keys", 0): 1})
        now[0] += 60
    finally:
        stale.close()
    again = kept_ring(tmp_path)
    try:
        assert again.offsets() == {("keys", 0): 1}
    finally:
        again.close()
