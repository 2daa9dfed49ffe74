"""`python -m services.notify`: the notify worker under the shared runtime, plus the deadline tracker (ADR 0022).

The runtime gives signals, the HTTP server (/metrics, /healthz, /readyz), logging
at `NOTIFY_LOG_LEVEL` and restart with back-off; the tracker child process runs
for the life of this process, and its death ends the worker (see `tracker`). On a stop the worker waits for the
tracker as its last step, so a second signal meanwhile is the runtime's forced stop (`service.stop_forced`, exit 0):
waited for after the runtime had returned, its signal handlers gone, a second SIGINT gave a KeyboardInterrupt
traceback (exit -2) and a second SIGTERM ended the process unlogged (-15).
"""

from __future__ import annotations

from services.common import early_stop

if __name__ == "__main__":  # run as the service (not imported by a test): before the slow imports below
    early_stop.hold()  # a stop signal while they run (about a second) is noted, not lost

import asyncio

from services.common import runtime
from services.common.refused import settings_checked
from services.common.runtime import Supervisor
from services.notify.app import run
from services.notify.settings import NotifySettings
from services.notify.tracker import TrackerProcess
from services.privacy.settings import PrivacySettings

SERVICE = "notify"


def main() -> None:
    with settings_checked(SERVICE):
        settings, privacy = NotifySettings(), PrivacySettings()
    refuse_without_keys(settings, privacy)
    tracker = TrackerProcess.start() if settings.deadlines else None

    async def worker(supervisor: Supervisor) -> None:
        if tracker is not None:
            supervisor.spawn("tracker-watch", tracker.watch(supervisor.stop))
        await run(supervisor, settings, privacy)

    async def tracker_stopped() -> None:  # the stop's last step, while the runtime still handles the signals
        if tracker is not None:
            await asyncio.to_thread(tracker.stop)

    try:
        runtime.main(SERVICE, settings, worker, on_stop=tracker_stopped)
    finally:
        if tracker is not None:  # a crash: the runtime has ended (a stop has stopped the tracker already)
            tracker.stop()


def refuse_without_keys(settings: NotifySettings, privacy: PrivacySettings) -> None:
    """Applicants' contacts arrive sealed (ADR 0015): without the keys notify would skip every citizen's message as
    erased, and say so once at start (ops audit). Refused unless asked for (`NOTIFY_WITHOUT_PRIVACY_KEYS`)."""
    if not privacy.configured and not settings.without_privacy_keys:
        raise SystemExit("notify: applicants' contacts are sealed (ADR 0015) and no key is configured to open them: "
                         "set PRIVACY_KEK or PRIVACY_KEK_FILE, and PRIVACY_PEPPER or PRIVACY_PEPPER_FILE, as "
                         "intake's; or NOTIFY_WITHOUT_PRIVACY_KEYS=true to start skipping every sealed contact")


if __name__ == "__main__":
    main()
