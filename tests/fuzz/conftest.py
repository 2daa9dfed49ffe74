"""The fuzz tests print how many examples each ran at the end of the run (profiles: `tests/fuzz/strategies.py`)."""

from __future__ import annotations

import pytest

from tests.fuzz.strategies import EXAMPLES, PROFILE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if EXAMPLES:
        terminalreporter.section(f"fuzz examples run (hypothesis profile {PROFILE!r})")
        for name, n in sorted(EXAMPLES.items()):
            terminalreporter.write_line(f"{n:7,d}  {name}")
        terminalreporter.write_line(f"{sum(EXAMPLES.values()):7,d}  in total")
