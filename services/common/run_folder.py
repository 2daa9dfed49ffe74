"""A process's own folder under a shared state folder, and the sweep of the folders whose process is gone.

A store a process rebuilds from Kafka (notify's ledger partitions, the deadline tracker's) lives in a folder of
that process's own; a SIGKILL or an OOM kill leaves it behind, so the next process to start there removes the
folders nobody holds. Who holds a folder is an exclusive `flock` on `<folder>.alive` beside it, taken when the
folder is claimed and dropped by the kernel when the process ends, however it ends. `kill(pid, 0)` on the pid in
the folder's name would be wrong across PID namespaces (containers sharing the state volume: the pid names
another process there, or none, and a live store would be deleted) and after pid reuse (a dead process's store
kept for ever); the lock is right in both. A folder without a lock file (left by a version before this one)
falls back to its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

LOCK_SUFFIX = ".alive"


class FolderHeld(OSError):
    """Another live process holds this folder's lock."""


def lock_of(folder: Path) -> Path:
    return folder.with_name(folder.name + LOCK_SUFFIX)


class RunFolder:
    """Holds `path`'s lock (`<path>.alive`) from construction to `release` (or the process's end).

    The folder itself may be created, emptied and removed meanwhile: the lock lives beside it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_of(path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FolderHeld(f"{path.name} is held by a live process") from None
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the folder up (call after removing it): the lock file goes, then the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            lock_of(self.path).unlink()
        os.close(self._fd)
        self._fd = None


def remove_orphans(base: Path, prefix: str) -> list[Path]:
    """Delete the folders `<prefix>…` under `base` (and their lock files) that no live process holds; returns them.

    A folder is held while some process holds its lock; a folder without a lock file, while the process whose
    pid its name carries (`<prefix><pid>[-…]`) runs.
    """
    removed: list[Path] = []
    names = {p.name.removesuffix(LOCK_SUFFIX) for p in base.glob(f"{prefix}*")}
    for name in sorted(names):
        folder = base / name
        lock = lock_of(folder)
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            if folder.is_dir() and not _pid_alive(folder.name[len(prefix):]):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        except OSError:  # cannot tell (permissions): keep it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its process runs
            os.close(fd)
            continue
        try:  # ours now: nobody else can claim it while it goes
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def _pid_alive(rest: str) -> bool:
    pid = rest.split("-", 1)[0]
    if not pid.isdigit():
        return True  # not a folder of ours: keep it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
