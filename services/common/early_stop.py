"""Stop signals that come while a service is still starting, before the runtime handles them (`stopping`).

Importing a service and reading its settings takes about a second (more on a loaded host), and Python's default for
SIGTERM and SIGHUP ends the process at once, for SIGINT with a traceback: a stop asked for then left no line saying
so (every entry point: intake, notify, metrics, gateway). `hold()`, the first thing each entry point does, notes such
signals instead; the runtime takes them (`taken`) as it installs its own handlers, and answers them as if they had
come then: `service.stop_requested`, a clean stop, exit 0 (a second one ends the process, as ever). Standard library
only, so that holding starts before the slow imports. A signal before `hold` (the interpreter's own start, tens of
milliseconds) still ends the process unlogged.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_noted: list[int] = []


def hold() -> None:
    """From now until the runtime's own handlers replace these: note each stop signal instead of dying."""
    for sig in HELD:
        signal.signal(sig, _note)


def _note(sig: int, _frame: FrameType | None) -> None:
    """The first stop signal is noted; a second one ends the process at once, as before `hold` (a start hung before
    the runtime's handlers, a settings file on a dead mount say, is still ended by asking twice, as later)."""
    if _noted:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return
    _noted.append(sig)


def taken() -> list[int]:
    """The stop signals noted since `hold`, in order, each given once."""
    noted = list(_noted)
    _noted.clear()
    return noted
