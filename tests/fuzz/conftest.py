"""Hypothesis profiles of the fuzz tests, and how many examples each ran (printed at the end of the run).

`ci` (the default) is derandomized: the same examples on every run, so CI is reproducible.
`HYPOTHESIS_PROFILE=explore` draws new examples each run and ten times as many (for a developer hunting bugs).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.strategies import EXAMPLES

_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}
settings.register_profile("ci", derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("explore", derandomize=False, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if EXAMPLES:
        terminalreporter.section("fuzz examples run")
        for name, n in sorted(EXAMPLES.items()):
            terminalreporter.write_line(f"{n:7,d}  {name}")
        terminalreporter.write_line(f"{sum(EXAMPLES.values()):7,d}  in total")
