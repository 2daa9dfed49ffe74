"""Store folders of killed processes are removed at the next start; a live process's are kept, whatever its pid
looks like from here (`services.common.run_folder`: liveness is a lock, not `kill(pid, 0)`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.run_folder import LOCK_SUFFIX, RunFolder, _locked, lock_of, remove_orphans
from services.notify.deadline_settings import RUN_PREFIX
from services.notify.ledger_store import PREFIX, RocksStores

pytestmark = pytest.mark.unit
Hold = Callable[[Path, str], "tuple[subprocess.Popen[str], Path]"]

HOLD = """
import sys, time
from pathlib import Path
from services.common.run_folder import RunFolder
print(RunFolder.claim(Path(sys.argv[1]), sys.argv[2]).path, flush=True)
time.sleep(120)
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def holder() -> Iterator[Hold]:
    """Starts a process that claims a folder under `base` and holds it until the test ends; returns its folder
    renamed to `name` (the lock follows its file: another container's tracker, whose pid means nothing here)."""
    procs: list[subprocess.Popen[str]] = []

    def hold(base: Path, name: str) -> tuple[subprocess.Popen[str], Path]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(base), RUN_PREFIX], stdout=subprocess.PIPE,
                                text=True, cwd=Path(__file__).resolve().parents[2])
        procs.append(proc)
        assert proc.stdout is not None
        claimed = Path(proc.stdout.readline().strip())
        assert claimed.is_dir() and lock_of(claimed).exists()
        folder = base / name
        claimed.rename(folder)
        lock_of(claimed).rename(lock_of(folder))
        return proc, folder

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def old(folder: Path) -> Path:
    """`folder` as if made two minutes ago."""
    stamp = time.time() - 120
    os.utime(folder, (stamp, stamp))
    return folder


@pytest.mark.parametrize(("prefix", "suffix"), [(RUN_PREFIX, ""), (PREFIX, "-x1")], ids=["tracker", "ledger"])
def test_a_killed_process_store_goes_and_a_live_one_stays(tmp_path: Path, prefix: str, suffix: str) -> None:
    """Folders from before the locks (no `.alive` file): a dead pid's goes once a minute old; a running one's, or
    one just made, stays."""
    gone, alive = tmp_path / f"{prefix}{dead_pid()}{suffix}", tmp_path / f"{prefix}{os.getpid()}{suffix}"
    young = tmp_path / f"{prefix}{dead_pid()}-young"
    for folder in (gone, alive, young):
        (folder / "p0").mkdir(parents=True)
    old(gone), old(alive)
    assert remove_orphans(tmp_path, prefix) == [gone]
    assert not gone.exists() and alive.exists() and young.exists()


def test_a_held_folder_stays_though_its_pid_is_dead_here(tmp_path: Path, holder: Hold) -> None:
    """A process in another PID namespace (its pid means nothing here: a dead one) holds its folder: it stays."""
    _, folder = holder(tmp_path, f"{RUN_PREFIX}{dead_pid()}-a")
    (folder / "p0").mkdir()
    old(folder)
    assert remove_orphans(tmp_path, RUN_PREFIX) == []
    assert (folder / "p0").is_dir() and lock_of(folder).exists()


def test_a_folder_whose_holder_was_killed_goes_though_its_pid_runs(tmp_path: Path, holder: Hold) -> None:
    """SIGKILL drops the lock: the folder goes, even when its name carries a running pid (pid reuse: ours)."""
    proc, folder = holder(tmp_path, f"{RUN_PREFIX}{os.getpid()}-a")
    (folder / "p0").mkdir()
    proc.kill()
    proc.wait()
    assert remove_orphans(tmp_path, RUN_PREFIX) == [folder]
    assert not folder.exists() and not lock_of(folder).exists()


def test_claims_are_unique_and_released_folders_leave_nothing(tmp_path: Path) -> None:
    """Two claims in one state folder (two trackers, or one pid in two namespaces) get folders of their own."""
    first, second = RunFolder.claim(tmp_path, RUN_PREFIX), RunFolder.claim(tmp_path, RUN_PREFIX)
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()
    assert remove_orphans(tmp_path, RUN_PREFIX) == []  # both held (this process holds each lock once)
    for run in (first, second):
        run.path.rmdir()
        run.release()
    assert list(tmp_path.iterdir()) == []


def test_a_lock_taken_on_a_deleted_file_does_not_count(tmp_path: Path) -> None:
    """A sweeper that opened a lock file, then lost the race to another that deleted it (and a new file took the
    name), must not believe it holds the name: `_locked` compares the file it locked with the one the path names."""
    path = tmp_path / f"{RUN_PREFIX}1-x{LOCK_SUFFIX}"
    path.touch()
    stale = os.open(path, os.O_RDWR)
    path.unlink()
    path.touch()  # a new claimer's file, same name
    fresh = os.open(path, os.O_RDWR)
    try:
        assert not _locked(stale, path)
        assert _locked(fresh, path)
    finally:
        os.close(stale)
        os.close(fresh)


def test_ledger_stores_of_a_live_run_survive_another_runs_start(tmp_path: Path) -> None:
    """Two notify runs on one state folder: the second's sweep keeps the first's stores; closed, they go."""
    first = RocksStores(tmp_path)
    first.open(0)
    second = RocksStores(tmp_path)
    assert (first.root / "p0").is_dir()
    first.close()
    second.close()
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_leaves_other_folders_alone(tmp_path: Path) -> None:
    """Only `<prefix><pid>…` folders are ever removed: another name under the state folder is not ours."""
    for name in ("not-ours", f"{RUN_PREFIX}abc"):
        (tmp_path / name).mkdir()
        old(tmp_path / name)
    assert remove_orphans(tmp_path, RUN_PREFIX) == []
    assert {p.name for p in tmp_path.iterdir()} == {"not-ours", f"{RUN_PREFIX}abc"}
