"""The tests shared by `make test`'s pytest runs (`tests/run.py`): whichever run reaches one first runs it.

Each run takes its tests in an order of its own (`TESTS_LANE`): the fault run (`-m slow`) takes the fault tests from
the first; the rest run everything else from the first, then the fault tests from the last; the broker run (unless
TESTS_RUNS=2) the real-broker tests from the last, then the unit tests, then the fault tests, each from the last.
Before a test is set up, its run claims it: a file named after its node id in the directory all share
(`TESTS_CLAIMS`), made only if absent (`O_EXCL`, atomic). A test another run claimed is skipped before any fixture
is set up and counted as "in another run", never as a skip (which CI fails, `tests/conftest.py`). So no run waits
idle while another still has its tests to do, and no test runs twice.

    python -m pytest -p tests.claims ...   (tests/run.py adds it; inert without TESTS_CLAIMS)
"""

from __future__ import annotations

import hashlib
import os

import pytest

CLAIMS = "TESTS_CLAIMS"
LANE = "TESTS_LANE"
REST_THEN_FAULTS = "rest"
"""Everything else from the first, then the fault tests from the last."""
BROKER_FIRST_FROM_THE_LAST = "broker-first-from-the-last"
"""The real-broker tests from the last, then the unit tests from the last, then the fault tests from the last."""
ELSEWHERE = "in another run"
REASON = "claimed by another of make test's pytest runs, which runs it"
CLAIMED = pytest.StashKey[bool]()


def is_fault_test(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


def claim(directory: str, nodeid: str) -> bool:
    """Whether this run is the first to claim the test (and so runs it)."""
    name = hashlib.sha256(nodeid.encode()).hexdigest()
    try:
        os.close(os.open(os.path.join(directory, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def claimed_elsewhere(item: pytest.Item) -> bool:
    return item.stash.get(CLAIMED, False)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The lane's order (`TESTS_LANE`), each module's tests still together: `rest`, everything else first, then the
    fault tests from the last (the fault run starts at the first); `broker-first-from-the-last`, the real-broker tests
    that are not fault tests from the last (the rest run starts at the first), then the unit tests, then the fault
    tests, each from the last."""
    lane = os.environ.get(LANE)
    if lane == REST_THEN_FAULTS:
        faults = [item for item in items if is_fault_test(item)]
        items[:] = [item for item in items if not is_fault_test(item)] + faults[::-1]
    elif lane == BROKER_FIRST_FROM_THE_LAST:
        items.reverse()
        items.sort(key=_broker_first)  # stable: each group from the last


def _broker_first(item: pytest.Item) -> int:
    return 2 if is_fault_test(item) else 0 if item.get_closest_marker("kafka") else 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    directory = os.environ.get(CLAIMS)
    if directory and not claim(directory, item.nodeid):
        item.stash[CLAIMED] = True
        pytest.skip(REASON)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if report.skipped and isinstance(report.longrepr, tuple) and str(report.longrepr[2]).endswith(REASON):
        return ELSEWHERE, "", "IN ANOTHER RUN"
    return None
