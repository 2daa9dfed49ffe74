"""What `/healthz` and `/readyz` report: alive while the loop answers, ready while the worker says it is."""

from __future__ import annotations

import time

from services.common import telemetry


class Health:
    """A service's readiness (assigned, restored, consuming) and its last commit, as the worker reports them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.ready = False
        self.detail = "starting"
        self.last_commit: float | None = None
        telemetry.READY.labels(service).set(0)

    def set_ready(self, ready: bool, detail: str) -> None:
        self.ready, self.detail = ready, detail
        telemetry.READY.labels(self.service).set(1 if ready else 0)

    def committed(self) -> None:
        """Record that the worker's progress (offsets) was committed just now."""
        self.last_commit = time.time()
        telemetry.LAST_COMMIT.labels(self.service).set(self.last_commit)

    def report(self) -> dict[str, object]:
        return {"service": self.service, "ready": self.ready, "detail": self.detail, "last_commit": self.last_commit}
