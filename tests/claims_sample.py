"""Sample tests for `tests/test_run.py` (not collected by the suite: the name is not `test_*.py`): tests that log
which run ran them, so that the test can count each one's runs when `make test`'s runs share them."""

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


def _broker_run() -> bool:
    """Whether `make test` runs a broker run beside this one: three runs, three shares of the ports."""
    return os.environ.get("TESTS_PORT_SHARE", "").endswith("/3")


def _wait_for(name: str) -> None:
    """Wait (at most 60 s) until another run has logged `name`, so that every run takes some, whatever their
    start-up times."""
    deadline = time.monotonic() + 60
    while name not in _log().read_text() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.unit
def test_the_rest() -> None:
    _ran("rest")


@pytest.mark.kafka
def test_broker_0() -> None:
    """The rest run's first broker test (no broker used): it waits until the broker run has taken one from the
    last (if there is one)."""
    if _broker_run():
        _wait_for("broker_3")
    _ran("broker_0")


@pytest.mark.kafka
@pytest.mark.parametrize("k", range(1, 4))
def test_broker(k: int) -> None:
    """broker_3 is the broker run's first (from the last): it waits until the rest run has run its first test (if
    there is a broker run), or the broker run, started first on a loaded machine, took every broker test before the
    rest run reached broker_0 (CI, 2026-12-07: all four in run 2/3)."""
    if k == 3 and _broker_run():
        _wait_for("rest")
    time.sleep(0.2)
    _ran(f"broker_{k}")


@pytest.mark.slow
def test_fault_0() -> None:
    """The fault run's first: it waits until the rest run has taken a fault test from the last."""
    _wait_for("fault_5")
    _ran("fault_0")


@pytest.mark.slow
@pytest.mark.parametrize("k", range(1, 6))
def test_fault(k: int) -> None:
    """fault_1 waits until the fault run has taken its first (fault_0): the others, done with theirs on a loaded
    machine before the fault run had started, took every fault test (CI on my clone, 2026-12-07: none in run 0/3)."""
    if k == 1:
        _wait_for("fault_0")
    time.sleep(0.2)
    _ran(f"fault_{k}")
