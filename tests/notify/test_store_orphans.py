"""Store folders of killed processes are removed at the next start; a live process's are kept, whatever its pid
looks like from here (`services.common.run_folder`: liveness is a lock, not `kill(pid, 0)`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.run_folder import FolderHeld, RunFolder, lock_of, remove_orphans
from services.notify.deadline_settings import RUN_PREFIX
from services.notify.ledger_store import PREFIX, RocksStores

pytestmark = pytest.mark.unit
Hold = Callable[[Path], "subprocess.Popen[str]"]

HOLD = """
import sys, time
from pathlib import Path
from services.common.run_folder import RunFolder
RunFolder(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def holder() -> Iterator[Hold]:
    """Starts a process that holds a folder's lock until the test ends (another container's tracker, say)."""
    procs: list[subprocess.Popen[str]] = []

    def hold(folder: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("prefix", "suffix"), [(RUN_PREFIX, ""), (PREFIX, "-x1")], ids=["tracker", "ledger"])
def test_a_killed_process_store_goes_and_a_live_one_stays(tmp_path: Path, prefix: str, suffix: str) -> None:
    """Folders from before the locks (no `.alive` file): a dead pid's goes, a running one's stays."""
    gone, alive = tmp_path / f"{prefix}{dead_pid()}{suffix}", tmp_path / f"{prefix}{os.getpid()}{suffix}"
    for folder in (gone, alive):
        (folder / "p0").mkdir(parents=True)
    assert remove_orphans(tmp_path, prefix) == [gone]
    assert not gone.exists() and alive.exists()


def test_a_held_folder_stays_though_its_pid_is_dead_here(tmp_path: Path, holder: Hold) -> None:
    """A process in another PID namespace (its pid means nothing here: a dead one) holds its folder: it stays."""
    folder = tmp_path / f"{RUN_PREFIX}{dead_pid()}"
    (folder / "p0").mkdir(parents=True)
    holder(folder)
    assert remove_orphans(tmp_path, RUN_PREFIX) == []
    assert (folder / "p0").is_dir() and lock_of(folder).exists()


def test_a_folder_whose_holder_was_killed_goes_though_its_pid_runs(tmp_path: Path, holder: Hold) -> None:
    """SIGKILL drops the lock: the folder goes, even when its name carries a running pid (pid reuse: ours)."""
    folder = tmp_path / f"{RUN_PREFIX}{os.getpid()}"
    (folder / "p0").mkdir(parents=True)
    proc = holder(folder)
    proc.kill()
    proc.wait()
    assert remove_orphans(tmp_path, RUN_PREFIX) == [folder]
    assert not folder.exists() and not lock_of(folder).exists()


def test_a_held_folder_cannot_be_claimed_twice(tmp_path: Path) -> None:
    """Two processes claiming one folder name (same pid in two namespaces) fail loudly rather than share it."""
    folder = tmp_path / f"{RUN_PREFIX}1"
    held = RunFolder(folder)
    with pytest.raises(FolderHeld):
        RunFolder(folder)
    held.release()
    RunFolder(folder).release()
    assert not lock_of(folder).exists()


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
    (tmp_path / "not-ours").mkdir()
    (tmp_path / f"{RUN_PREFIX}abc").mkdir()
    assert remove_orphans(tmp_path, RUN_PREFIX) == []
    assert {p.name for p in tmp_path.iterdir()} == {"not-ours", f"{RUN_PREFIX}abc"}
