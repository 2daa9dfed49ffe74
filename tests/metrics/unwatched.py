"""`python -m tests.metrics.unwatched`: the metrics service with its stall watch blinded, so that a test shows what
the changelog fence alone guarantees when a worker wakes after its partitions moved (ADR 0016)."""

from __future__ import annotations

from services.common.stall import StallWatch
from services.metrics import __main__ as service
from services.metrics import worker


class BlindWatch(StallWatch):
    """Ticks like the real watch but never reports a stall: a woken worker applies and writes what it fetched."""

    def check(self) -> None:
        return None


if __name__ == "__main__":
    setattr(worker, "StallWatch", BlindWatch)  # noqa: B010 - replaces the class the worker builds each run
    service.main()
