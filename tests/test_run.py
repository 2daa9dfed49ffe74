"""`make test`'s runner (tests/run.py): two pytest runs side by side, and one exit status that hides no failure."""

from __future__ import annotations

import pytest

from tests import run

pytestmark = pytest.mark.unit


def test_no_tests_collected_in_a_half_is_success_in_both_not_and_an_error_is_not() -> None:
    """A selection that one half does not match passes (unit tests only: the fault run collects nothing); one that
    neither matches is no success (exit 5), nor is a path that does not exist."""
    assert run.main(["-q", "--co", "tests/test_run.py"]) == 0  # unit tests: the fault half collects nothing
    assert run.main(["-q", "--co", "tests/naming.py"]) == run.NO_TESTS  # a module without tests: nothing at all
    assert run.main(["-q", "--co", "tests/no_such_test_file.py"]) != 0


def test_a_marker_expression_of_the_callers_runs_once(capsys: pytest.CaptureFixture[str]) -> None:
    """With `-m` in the arguments the suite runs once, as asked, without the side-by-side split."""
    assert run.main(["-q", "--co", "-m", "unit", "tests/test_run.py"]) == 0
    assert "side" not in capsys.readouterr().out
    assert run.main(["-q", "--co", "-m", "slow", "tests/test_run.py"]) == run.NO_TESTS  # it selected nothing
