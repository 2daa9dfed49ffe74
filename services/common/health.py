"""What `/healthz` and `/readyz` report: alive while the loop answers and the runtime is not stuck restarting runs
that get nowhere; ready while the worker says it is."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from services.common import telemetry


async def _answers() -> bool:
    return True


class Health:
    """A service's readiness (assigned, restored, consuming) and its last commit, as the worker reports them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.ready = False
        self.detail = "starting"
        self.last_commit: float | None = None
        self._unwell: dict[str, str] = {}
        """Why, per retrying loop that keeps failing without progress (`streak.Streak`): the runtime's runs, and the
        loops a service retries within a run (the gateway's claims reader and broker watch)."""
        self.progress = 0
        """Commits reported so far: the runtime's sign that a run got somewhere (and a run that stays up a while)."""
        self.broker_answers: Callable[[], Awaitable[bool]] = _answers
        """Whether the brokers answer now (`probe.bootstrap_answers`, set by `runtime.serve`): a loop's failure while
        they do not is an outage, which `/readyz` reports and no restart of the process mends (`streak`)."""
        self._stopping = False
        telemetry.READY.labels(service).set(0)

    def set_ready(self, ready: bool, detail: str) -> None:
        """Say whether the worker can take work now. Once the service is stopping it never says ready again: a
        worker's loop still running through its stop (the gateway's broker watch, a rebalance completing) must not
        send a load balancer back to a process about to close its ports."""
        if ready and self._stopping:
            return
        self.ready, self.detail = ready, detail
        telemetry.READY.labels(self.service).set(1 if ready else 0)

    def stopping(self) -> None:
        """A stop was asked for: not ready from now on, for good."""
        self._stopping = True
        self.set_ready(False, "stopping")

    def committed(self) -> None:
        """Record that the worker's progress (offsets) was committed just now."""
        self.last_commit = time.time()
        self._progressed()
        telemetry.LAST_COMMIT.labels(self.service).set(self.last_commit)

    @property
    def alive(self) -> bool:
        """False while one of the service's retrying loops fails again and again without progress."""
        return not self._unwell

    @property
    def alive_detail(self) -> str:
        return "; ".join(self._unwell.values()) or "running"

    def unwell(self, loop: str) -> str | None:
        """Why `loop` keeps `/healthz` at 503, or None."""
        return self._unwell.get(loop)

    def set_alive(self, alive: bool, detail: str, loop: str = "runs") -> None:
        """Say whether `loop` (the runtime's "runs", or a task's own retrying) is well; alive while all are."""
        if alive:
            self._unwell.pop(loop, None)
        else:
            self._unwell[loop] = detail

    def _progressed(self) -> None:
        """A run got somewhere: whatever restarts came before, the service is alive."""
        self.progress += 1
        self._unwell.clear()

    def liveness(self) -> dict[str, object]:
        return {"service": self.service, "alive": self.alive, "detail": self.alive_detail}

    def report(self) -> dict[str, object]:
        return {"service": self.service, "ready": self.ready, "detail": self.detail, "last_commit": self.last_commit}
