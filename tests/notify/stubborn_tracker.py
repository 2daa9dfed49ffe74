"""`python -m tests.notify.stubborn_tracker FOLDER`: notify's entry point (`services.notify.__main__.main`) with an
idle worker and a tracker child that is slow to stop, for test_tracker_signals.py. No broker.

The worker (`outage` as a second argument: every run failing, as in a broker outage) writes FOLDER/started once
running; the tracker child writes FOLDER/asked when notify asks it to stop (its
standard input ends), then ignores that and SIGTERM for 10 s, so notify waits `tracker.STOP_TIMEOUT_S` for it before
killing it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from services.common.runtime import Supervisor
from services.notify import __main__ as notify_main
from services.notify.settings import NotifySettings
from services.notify.tracker import TrackerProcess
from services.privacy.settings import PrivacySettings

FOLDER = Path(sys.argv[1]) if __name__ == "__main__" else Path()
STUBBORN = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); sys.stdin.read(); "
            f"pathlib.Path({str(FOLDER / 'asked')!r}).write_text('asked'); time.sleep(10)")


class Stubborn(TrackerProcess):
    @classmethod
    def start(cls) -> TrackerProcess:
        return cls(subprocess.Popen([sys.executable, "-c", STUBBORN], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


async def idle(supervisor: Supervisor, settings: NotifySettings, privacy: PrivacySettings | None = None) -> None:
    (FOLDER / "started").write_text("started")
    await supervisor.stop.wait()


async def outage(supervisor: Supervisor, settings: NotifySettings, privacy: PrivacySettings | None = None) -> None:
    """Every run fails as in a broker outage: the runtime waits between runs, where the stop then lands."""
    (FOLDER / "started").write_text("started")
    raise KafkaConnectionError("the broker is gone")


if __name__ == "__main__":
    notify_main.TrackerProcess = Stubborn  # type: ignore[misc]
    notify_main.run = outage if sys.argv[2:] == ["outage"] else idle
    notify_main.main()
