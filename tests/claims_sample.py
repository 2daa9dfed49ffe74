"""Sample tests for `tests/test_run.py` (not collected by the suite: the name is not `test_*.py`): fault tests that
log which run ran them, so that the test can count each one's runs when `make test`'s two runs share them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

LOG = "CLAIMS_SAMPLE_LOG"


def _log() -> Path:
    return Path(os.environ[LOG])


def _ran(name: str) -> None:
    with _log().open("a") as f:
        f.write(f"{name} {os.environ.get('TESTS_PORT_SHARE', '-')}\n")


@pytest.mark.unit
def test_the_rest() -> None:
    _ran("rest")


@pytest.mark.slow
def test_fault_0() -> None:
    """The fault run's first: it waits (at most 60 s) until the other run has taken a fault test from the last, so
    that both runs take some, whatever their start-up times."""
    deadline = time.monotonic() + 60
    while "fault_5" not in _log().read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    _ran("fault_0")


@pytest.mark.slow
@pytest.mark.parametrize("k", range(1, 6))
def test_fault(k: int) -> None:
    time.sleep(0.2)
    _ran(f"fault_{k}")
