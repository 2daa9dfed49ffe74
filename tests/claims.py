"""The fault tests shared by `make test`'s two pytest runs (`tests/run.py`): whichever run reaches one first runs it.

One run takes the fault tests (`slow`) from the first; the other runs everything else first and then the fault tests
from the last (`TESTS_SLOW_LAST`). Before a fault test is set up, its run claims it: a file named after its node id
in the directory both share (`TESTS_CLAIMS`), made only if absent (`O_EXCL`, atomic). A test the other run claimed
is skipped before any fixture is set up and counted as "in the other run", never as a skip (which CI fails,
`tests/conftest.py`). So neither run waits idle while the other still has fault tests to do, and no test runs twice.

    python -m pytest -p tests.claims ...   (tests/run.py adds it; inert without TESTS_CLAIMS)
"""

from __future__ import annotations

import hashlib
import os

import pytest

CLAIMS = "TESTS_CLAIMS"
SLOW_LAST = "TESTS_SLOW_LAST"
ELSEWHERE = "in the other run"
REASON = "claimed by make test's other pytest run, which runs it"
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
    """With TESTS_SLOW_LAST: everything else first, then the fault tests from the last (the other run starts at the
    first), each module's tests still together."""
    if os.environ.get(SLOW_LAST):
        faults = [item for item in items if is_fault_test(item)]
        items[:] = [item for item in items if not is_fault_test(item)] + faults[::-1]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    directory = os.environ.get(CLAIMS)
    if directory and is_fault_test(item) and not claim(directory, item.nodeid):
        item.stash[CLAIMED] = True
        pytest.skip(REASON)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if report.skipped and isinstance(report.longrepr, tuple) and str(report.longrepr[2]).endswith(REASON):
        return ELSEWHERE, "", "IN THE OTHER RUN"
    return None
