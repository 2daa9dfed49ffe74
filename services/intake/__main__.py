"""`python -m services.intake`: one intake worker until SIGTERM/SIGINT/SIGHUP.

`services.common.runtime` serves /metrics, /healthz and /readyz, and restarts
the worker with back-off after a Kafka error (state is restored from Kafka);
anything else ends the process with exit code 1.
"""

from __future__ import annotations

from services.common import early_stop

if __name__ == "__main__":  # run as the service (not imported by a test): before the slow imports below
    early_stop.hold()  # a stop signal while they run (about a second) is noted, not lost

from services.common import runtime
from services.common.refused import settings_checked
from services.intake.settings import IntakeSettings
from services.intake.worker import intake

if __name__ == "__main__":
    with settings_checked("intake"):
        settings = IntakeSettings()
        work = intake(settings)  # reads PRIVACY_*
    runtime.main("intake", settings, work)
