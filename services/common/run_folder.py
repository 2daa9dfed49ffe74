"""A process's own folder under a shared state folder, and the sweep of the folders whose process is gone.

A store a process rebuilds from Kafka (notify's ledger partitions, the deadline tracker's) lives in a folder of
that process's own; a SIGKILL or an OOM kill leaves it behind, so the next process to start there removes the
folders nobody holds. Who holds a folder is an exclusive `flock` on `<folder>.alive` beside it, taken before the
folder is made and dropped by the kernel when the process ends, however it ends. `kill(pid, 0)` on the pid in
the folder's name would be wrong across PID namespaces (containers sharing the state volume: the pid names
another process there, or none, and a live store would be deleted) and after pid reuse; the lock is right in
both. Names are unique (`<prefix><pid>-<random>`), so a name is never claimed twice.

The state folder must be on a local file system (flock on NFS is emulated or host-local) and is best kept out of
a /tmp that a cleaner ages. A folder without a lock file (left by a version before this one) falls back to its
pid, and only once it is a minute old.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path

LOCK_SUFFIX = ".alive"
LEGACY_AGE_S = 60.0
"""A folder without a lock file is judged by its pid only once this old (never one being made right now)."""


def lock_of(folder: Path) -> Path:
    return folder.with_name(folder.name + LOCK_SUFFIX)


def _locked(fd: int, path: Path) -> bool:
    """Take `fd`'s exclusive lock without waiting; True only if it is taken and `path` still names that file (a
    sweeper may have deleted it, and another process made a new one, between our open and our lock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class RunFolder:
    """A new folder `<base>/<prefix><pid>-<random>`, held (its lock) from `claim` to `release` or the process's end.

    The folder itself may be emptied, removed and made again meanwhile: the lock lives beside it.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def claim(cls, base: Path, prefix: str) -> RunFolder:
        base.mkdir(parents=True, exist_ok=True)
        while True:
            path = base / f"{prefix}{os.getpid()}-{secrets.token_hex(6)}"
            try:
                fd = os.open(lock_of(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            if _locked(fd, lock_of(path)):  # a sweeper that opened it first found it unlocked and deleted it: again
                path.mkdir()
                return cls(path, fd)
            os.close(fd)

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
    pid its name carries (`<prefix><pid>[-…]`) runs, or while it is younger than `LEGACY_AGE_S`.
    """
    removed: list[Path] = []
    names = {p.name.removesuffix(LOCK_SUFFIX) for p in base.glob(f"{prefix}*")}
    for name in sorted(names):
        folder = base / name
        lock = lock_of(folder)
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            if _legacy_orphan(folder, folder.name[len(prefix):]):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        except OSError:  # cannot tell (permissions): keep it
            continue
        try:
            if not _locked(fd, lock):  # held: its process runs (or another sweeper is removing it)
                continue
            shutil.rmtree(folder, ignore_errors=True)  # ours now: nobody else can claim it while it goes
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def _legacy_orphan(folder: Path, rest: str) -> bool:
    """A folder without a lock file: orphaned if a minute old and its pid does not run here."""
    pid = rest.split("-", 1)[0]
    if not pid.isdigit():
        return False  # not a folder of ours
    try:
        if time.time() - folder.stat().st_mtime < LEGACY_AGE_S:
            return False
    except FileNotFoundError:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
