"""What a worker's `/readyz` says: ready only while its partitions are assigned and restored and Kafka answers.

Two sources, each able to take readiness away and neither able to give back what
the other took: the rebalance listener (assigned and restored, rebalancing,
stopping) and the broker probe (unreachable, an offset commit overdue). Ready is
their AND, so a probe that sees the broker again during a rebalance or a restore
reports the rebalance, not "ready".
"""

from __future__ import annotations

from services.common.health import Health


class Readiness:
    """One run's readiness; until the first assignment it leaves the health's detail as the runtime set it."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self._partitions: str | None = None  # the detail while assigned and restored; None while not
        self._waiting = health.detail  # why not, while not ("starting", "restarting after ...", "rebalancing")
        self._trouble: str | None = None  # why Kafka does not serve this worker now; None while it does

    def owning(self, detail: str) -> None:
        """Partitions assigned and restored."""
        self._partitions = detail
        self._report()

    def not_owning(self, why: str) -> None:
        """Partitions leaving or not yet restored (rebalancing, stopping)."""
        self._partitions, self._waiting = None, why
        self._report()

    def kafka(self, trouble: str | None) -> None:
        """The broker probe's verdict: None when it answers, else what is wrong."""
        if trouble != self._trouble:
            self._trouble = trouble
            self._report()

    def _report(self) -> None:
        if self._trouble is not None:
            self.health.set_ready(False, self._trouble)
        elif self._partitions is None:
            self.health.set_ready(False, self._waiting)
        else:
            self.health.set_ready(True, self._partitions)
