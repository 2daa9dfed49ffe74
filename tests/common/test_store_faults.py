"""A store's disk failing (full, a damaged file) is no record's bug (helper `disk`, 2026-12-06): before, with the disk
full every metric event after was dead-lettered `internal_error` and committed, intake dead-lettered each applicant
it met, the crash line said `error=Exception` and a place, and a kept key store with a damaged block was kept at every
start and raised at every read of that block. A full disk is made real here: a per-file size limit (`RLIMIT_FSIZE`,
Python ignores SIGXFSZ), so RocksDB's writes past it fail with EFBIG as they would with ENOSPC."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from rocksdict import Rdict
from structlog.testing import capture_logs

from schemas.deadletter import DeadLetterContext, Rejection
from schemas.events import Family
from services.common import rocks, runtime, store_faults
from services.common.logging import error_fields
from services.common.runtime import Supervisor
from services.common.settings import KafkaConnection, ServiceSettings
from services.intake.decide import Decider, allow_all
from services.intake.dedup import SeenIds
from services.metrics import ownership
from services.metrics.partition import PartitionState
from services.metrics.store import as_mapping
from services.metrics.topics import Names
from services.privacy import disk
from services.privacy import disk_rows as rows
from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import ASIDE, DISCARDED, KEPT_PREFIX, Kept
from services.privacy.key_tables import _Key
from tests.kafkatools import ROOT
from tests.metrics.test_core import lifecycle
from tests.privacy.keys import KEK, NOW
from tests.privacy.test_disk_keys import ring
from tests.samples import canonical_dossier, dumps

pytestmark = pytest.mark.unit
LIMIT = 64 * 1024
"""Bytes a file may grow to while the disk is "full"."""


@contextmanager
def disk_full(limit: int = LIMIT) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextmanager
def failed_store(path: Path) -> Iterator[tuple[Rdict, Exception]]:
    """A run's store (no write-ahead log) whose memtable flush failed on the full disk: every write after fails (its
    close too, flushing)."""
    db = rocks.open_fresh(path)
    try:
        with disk_full(), pytest.raises(Exception) as raised:  # (rocksdict raises bare Exceptions)
            for _ in range(200_000):  # ~4 MB a flush: well within
                db.put(os.urandom(16), os.urandom(200))
        yield db, raised.value
    finally:
        with suppress(Exception):
            db.close()


def test_a_full_disk_is_logged_with_the_store_s_file_and_the_cause(tmp_path: Path) -> None:
    with failed_store(tmp_path / "store") as (_, error):
        fields = error_fields(error)
    assert fields["file"].startswith(str(tmp_path / "store") + "/")
    assert fields["reason"] == "IO error: File too large"


def test_a_metrics_partition_on_a_full_disk_ends_the_process_not_each_event(tmp_path: Path) -> None:
    """`apply_safely` raises `StoreFault` (before: an `internal_error` Rejection, the event committed uncounted)."""
    with failed_store(tmp_path / "store") as (db, _):
        part = PartitionState(0, as_mapping(db))
        with pytest.raises(Exception, match="File too large") as raised:  # (its type checked below)
            assert not isinstance(part.apply_safely(lifecycle("D-9")[0]), Rejection)
    assert type(raised.value).__name__ == "StoreFault"


def test_intake_with_its_kept_key_store_on_a_full_disk_ends_not_dead_letters(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A change of the keyring writes what the key store's reader staged once `STAGED_MAX` rows wait (one here):
    once the store's log cannot grow, the record raises `StoreFault` (before: dead-lettered `internal_error`, and
    every record after it too)."""
    monkeypatch.setattr(disk, "STAGED_MAX", 1)
    table = DiskKeys(tmp_path, cached=2, kept=Kept.of("ns-tests", {"kek-1": KEK}, "kek-1"))
    decider = Decider(Family.DOSSIER, "t1.commune.raw.dossier", 4, SeenIds(), allow_all, 1024 * 1024,
                      "2026-12-06T00:00:00+00:00", ring(table))
    letters = []
    try:
        with disk_full(), pytest.raises(Exception, match="File too large") as raised:  # (its type: below)
            for i in range(2_000):  # a few hundred fill the log's 64 KB
                table._stage(rows.KEYS + f"confirmed-{i}".encode(), os.urandom(300))  # as the reader stages
                body = canonical_dossier(f"evt-{i}")
                body["data"]["applicant"]["phone"] = f"09{i:08d}"
                decision = decider.decide(dumps(body), [], offset=i)
                if isinstance(decision, DeadLetterContext):
                    letters.append(decision.message)
    finally:
        with suppress(Exception):
            table.close()
    assert (type(raised.value).__name__, letters) == ("StoreFault", [])


def test_a_kept_key_store_found_damaged_starts_over_at_the_next_start(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A data block of the kept store damaged (same size: it opens, and its fingerprint reads): the read raises, the
    crash marks the folder (`runtime._crashed`), and the next start reads the key topics again (before: kept, and the
    same read raised at every start)."""
    kept = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")
    table = DiskKeys(tmp_path, cached=1, kept=kept)
    subjects = [f"s-{i}" for i in range(30_000)]
    for i, subject in enumerate(subjects):
        table.put(subject, (_Key(f"k-{i}", os.urandom(32), NOW, None, digest=b"d" * 8),))
    table.checkpoint({("keys", 0): len(subjects)})
    table.close()
    sst = min((tmp_path / f"{KEPT_PREFIX}ns-tests").glob("*.sst"))
    with open(sst, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(8192))
    table = DiskKeys(tmp_path, cached=1, kept=kept)
    assert table.offsets() == {("keys", 0): len(subjects)}  # kept: the damage does not show at open

    async def worker(_: Supervisor) -> None:
        for subject in subjects:
            table.get(subject)

    monkeypatch.setattr(runtime, "configure", lambda _: None)
    monkeypatch.setattr(runtime, "freeze_imports", lambda: None)
    try:
        with capture_logs() as logs, pytest.raises(SystemExit):
            runtime.main("disk-test", ServiceSettings(http_port=0), worker)
    finally:
        table.close()
    table = DiskKeys(tmp_path, cached=1, kept=kept)
    try:
        assert (table.count(), table.offsets()) == (0, {})  # read from the beginning
        assert not (sst.parent / store_faults.DAMAGED).exists()
    finally:
        table.close()
    crashed = next(e for e in logs if e["event"] == "service.crashed")
    assert (crashed["file"], crashed["reason"]) == (str(sst), "Corruption: block checksum mismatch")


def kept_with_keys(folder: Path, kept: Kept, count: int, close: bool = True) -> None:
    table = DiskKeys(folder, cached=1, kept=kept)
    for i in range(count):
        table.put(f"s-{i}", (_Key(f"k-{i}", os.urandom(32), NOW, None, digest=b"d" * 8),))
    table.checkpoint({("keys", 0): count})
    if close:
        table.close()


def opened_again(folder: Path, kept: Kept) -> tuple[int, dict[tuple[str, int], int]]:
    table = DiskKeys(folder, cached=1, kept=kept)
    try:
        return table.count(), table.offsets()
    finally:
        table.close()


@pytest.mark.parametrize("limit", [0, 1024], ids=["no-byte", "a-kilobyte"])
def test_a_kept_key_store_met_by_a_full_disk_at_its_start_is_left_as_it_was(tmp_path: Path, limit: int) -> None:
    """The disk full when a service starts: the kept store does not open (RocksDB writes a new manifest at its open;
    rocksdict its settings), so it looked unreadable and was removed to start over, whose open failed too: the store
    was lost, and the next start, with room, read the key topics whole (minutes per year of keys). Now it is replaced
    only once its successor opens: the start fails, and the next one goes on from the store as it was."""
    kept = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")
    kept_with_keys(tmp_path, kept, 500)
    with capture_logs() as logs, disk_full(limit), pytest.raises(store_faults.StoreFault, match="File too large"):
        DiskKeys(tmp_path, cached=1, kept=kept)  # (its log lines held in memory: a log file is a file too)
    assert opened_again(tmp_path, kept) == (500, {("keys", 0): 500})
    assert not [e for e in logs if e["event"].startswith("privacy.key_store")], logs  # not taken for unreadable


KILLED_KEEPER = """
import os, signal, sys
from pathlib import Path
from tests.common.test_store_faults import kept_with_keys
from services.privacy.disk_folder import Kept
from tests.privacy.keys import KEK
kept_with_keys(Path(sys.argv[1]), Kept.of("ns-tests", {"kek-1": KEK}, "kek-1"), 20_000, close=False)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kept_key_store_whose_log_the_disk_has_no_room_to_replay_is_left_as_it_was(tmp_path: Path) -> None:
    """Killed with ~2 MB in its write-ahead log, the store's open replays it into a new file, which a disk with a few
    kilobytes left refuses, while a fresh store opens in them: it was taken for unreadable, started over, and the next
    start, with room, had 0 keys (review, 2026-12-07). The disk's refusal now ends the start (`StoreFault`)."""
    done = subprocess.run([sys.executable, "-c", KILLED_KEEPER, str(tmp_path)], cwd=ROOT, check=False, timeout=120)
    assert done.returncode == -signal.SIGKILL
    kept = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")
    with capture_logs() as logs, disk_full(), pytest.raises(store_faults.StoreFault, match="File too large"):
        DiskKeys(tmp_path, cached=1, kept=kept)  # (its log lines held in memory: a log file is a file too)
    assert opened_again(tmp_path, kept) == (20_000, {("keys", 0): 20_000})
    assert not [e for e in logs if e["event"].startswith("privacy.key_store")], logs


def test_a_kept_key_store_folder_the_disk_will_not_let_be_read_is_left_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's own read of the folder refused (its `DAMAGED` mark not readable: a folder of another owner, a failing
    disk) was taken for unreadable too, and the store started over (review: reproduced as another user); now it is
    the disk's refusal, as RocksDB's are. (As root a mode refuses nothing: the refusal is given here.)"""
    from services.privacy import disk_folder

    kept = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")
    kept_with_keys(tmp_path, kept, 30)

    def refused(path: Path) -> str | None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path / store_faults.DAMAGED))

    with monkeypatch.context() as patched:
        patched.setattr(disk_folder, "_damage", refused)
        with pytest.raises(store_faults.StoreFault, match="IO error: Permission denied"):
            DiskKeys(tmp_path, cached=1, kept=kept)
    assert opened_again(tmp_path, kept) == (30, {("keys", 0): 30})
    assert store_faults.refusal(FileNotFoundError(errno.ENOENT, "gone", "/x")) is None  # a file missing: no refusal


def test_a_start_killed_while_replacing_the_kept_store_puts_it_back(tmp_path: Path) -> None:
    """Killed after the kept store was moved aside and before its successor opened (or was told it did): the next
    start puts it back and judges it again, as it was; a store left aside is never lost, nor kept beside."""
    kept = Kept.of("ns-tests", {"kek-1": KEK}, "kek-1")
    kept_with_keys(tmp_path, kept, 50)
    folder = tmp_path / f"{KEPT_PREFIX}ns-tests"
    os.replace(folder, folder.with_name(folder.name + ASIDE))
    rocks.open_fresh(folder).close()  # a successor half made
    assert opened_again(tmp_path, kept) == (50, {("keys", 0): 50})
    assert not folder.with_name(folder.name + ASIDE).exists()
    old = tmp_path / "old"
    os.replace(folder, old)
    kept_with_keys(tmp_path, kept, 7)  # killed while removing the one it replaced: the successor opened and is kept,
    os.replace(old, folder.with_name(folder.name + DISCARDED))  # what is left of the old one never put back
    assert opened_again(tmp_path, kept) == (7, {("keys", 0): 7})
    assert not folder.with_name(folder.name + DISCARDED).exists()


async def test_a_metrics_restore_on_a_full_disk_ends_not_skips_every_state(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore whose store stopped taking writes raises `StoreFault`: before, each changelog record after was
    skipped (`metrics.restore_skipped`) and the worker went on without those states: missing from its figures, and
    each entity's next event taken for its first."""
    state_key, state = PartitionState(0, {}).apply(lifecycle("D-7")[0]) or (b"", b"")
    records = [ConsumerRecord("changelog", 0, 0, 0, 0, state_key, state, None, len(state_key), len(state), [])]

    async def read_to_end(conn: object, topic: str, partitions: list[int], apply: Callable[..., None],
                          **_: object) -> int:
        for record in records:
            apply(0, record)
        return len(records)

    class Writer:
        async def start(self) -> None:
            return None

    with failed_store(tmp_path / "store") as (db, _):
        monkeypatch.setattr(ownership, "read_to_end", read_to_end)
        monkeypatch.setattr(ownership.store, "open_fresh", lambda path: db)
        owner = ownership.Ownership(KafkaConnection(), Names(""), tmp_path, "test", new_writer=lambda p: Writer())
        with pytest.raises(Exception, match="File too large") as raised:  # (its type below)
            await owner._restore([0])
    assert type(raised.value).__name__ == "StoreFault"


def test_the_gateway_loads_no_rocksdb_for_the_store_faults_it_never_meets() -> None:
    """The runtime tells store faults apart (`store_faults`) without loading rocksdict: placed in `rocks`, they took
    the gateway, which opens no store, from 91 to 98 MB resident at start, 99.9 MB at the peak of its 1 GiB body test
    (`tests/gateway/test_memory_kafka.py`, whose bound is 100 MB)."""
    import subprocess
    import sys

    code = "import sys, services.gateway.__main__; print('rocksdict' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
