"""Store folders of killed processes are removed at the next start; a live process's are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.notify.deadline_settings import RUN_PREFIX
from services.notify.ledger_store import PREFIX, remove_orphans

pytestmark = pytest.mark.unit


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(("prefix", "suffix"), [(RUN_PREFIX, ""), (PREFIX, "-x1")], ids=["tracker", "ledger"])
def test_a_killed_process_store_goes_and_a_live_one_stays(tmp_path: Path, prefix: str, suffix: str) -> None:
    """A SIGKILL or OOM kill leaves `<prefix><pid>` behind: the next start deletes it, never a running one's."""
    gone, alive = tmp_path / f"{prefix}{dead_pid()}{suffix}", tmp_path / f"{prefix}{os.getpid()}{suffix}"
    for folder in (gone, alive):
        (folder / "p0").mkdir(parents=True)
    remove_orphans(tmp_path, prefix)
    assert not gone.exists() and alive.exists()
