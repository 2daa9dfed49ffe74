"""`make test`'s runner (tests/run.py): two pytest runs side by side, and one exit status that hides no failure."""

from __future__ import annotations

import pytest

from tests import run

pytestmark = pytest.mark.unit


def test_no_tests_collected_in_a_half_is_success_and_an_error_is_not() -> None:
    """A selection that one half (or both) does not match passes; a path that does not exist fails the run."""
    assert run.main(["-q", "--co", "tests/naming.py"]) == 0  # a module without tests: both halves collect nothing
    assert run.main(["-q", "--co", "tests/no_such_test_file.py"]) != 0


def test_a_marker_expression_of_the_callers_runs_once(capsys: pytest.CaptureFixture[str]) -> None:
    """With `-m` in the arguments the suite runs once, as asked, without the side-by-side split."""
    assert run.main(["-q", "--co", "-m", "unit", "tests/test_run.py"]) == 0
    assert "side" not in capsys.readouterr().out
