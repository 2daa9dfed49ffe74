"""`python -m services.metrics`: one metrics worker under the shared runtime (`services.common.runtime`).

`/metrics`, `/healthz` and `/readyz` are served on METRICS_HTTP_HOST:METRICS_HTTP_PORT;
`/metrics` carries the owned partitions' commune figures before the process's own
metrics. A Kafka error ends the run (the worker stops exporting and drops its
state) and the runtime starts it afresh with back-off, restoring from the
changelog; anything else ends the process with exit code 1.
"""

from __future__ import annotations

from services.common import early_stop

if __name__ == "__main__":  # run as the service (not imported by a test): before the slow imports below
    early_stop.hold()  # a stop signal while they run (about a second) is noted, not lost

from services.common import runtime
from services.common.refused import settings_checked
from services.metrics.settings import MetricsSettings
from services.metrics.worker import MetricsWorker


def main() -> None:
    with settings_checked("metrics"):
        settings = MetricsSettings()
    worker = MetricsWorker(settings)
    runtime.main("metrics", settings, worker.run, extra=worker.figures)


if __name__ == "__main__":
    main()
