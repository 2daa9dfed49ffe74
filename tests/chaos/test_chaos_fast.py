"""The chaos matrix's fast rows against the real services (the rest: `make chaos`): nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.matrix import MATRIX
from tests.chaos.scenario import Scenario, run
from tests.chaos.table import cells

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
FAST = [s for s in MATRIX if s.fast]


@pytest.mark.parametrize("scenario", FAST, ids=[s.name for s in FAST])
def test_fast_row_loses_duplicates_and_reorders_nothing(scenario: Scenario, kafka_bootstrap: str,
                                                        tmp_path: Path) -> None:
    """A fault mid-stream (worker SIGKILL, provider outage): every record sent is accounted for exactly once, and no run
    restarted in-process past the row's bound."""
    row = asyncio.run(run(scenario, kafka_bootstrap, tmp_path))
    print(" | ".join(cells(row)))
    assert not row.error, row.error
    assert row.counts is not None and row.recovered_s is not None
    assert (row.counts.lost, row.counts.duplicated) == (0, 0), cells(row)
    assert row.counts.out_of_order in (0, None), cells(row)
    assert row.counts.sent > 0
    assert not row.exits, f"workers exited unbidden: {row.exits}"
    assert not row.restarts_over, row.restarts_over
    assert row.clean
