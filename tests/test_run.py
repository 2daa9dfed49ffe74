"""`make test`'s runner (tests/run.py): two pytest runs side by side, and one exit status that hides no failure."""

from __future__ import annotations

from pathlib import Path

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


def test_the_two_runs_share_the_fault_tests_each_run_once_and_none_counted_as_a_skip(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault run takes the fault tests from the first, the other run (once done with the rest) from the last:
    each runs exactly once, in one run or the other, both runs take some, and a test the other run ran is counted
    as that, not as a skip, which CI would fail."""
    log = tmp_path / "ran.log"
    log.touch()
    monkeypatch.setenv("CLAIMS_SAMPLE_LOG", str(log))
    monkeypatch.setenv("CI", "true")
    assert run.main(["-q", "-p", "no:cacheprovider", "tests/claims_sample.py"]) == 0
    out = capfd.readouterr().out
    ran = [line.split() for line in log.read_text().splitlines()]
    names = [name for name, _ in ran]
    assert sorted(names) == ["fault_0", "fault_1", "fault_2", "fault_3", "fault_4", "fault_5", "rest"], ran
    by_run = {share for name, share in ran if name.startswith("fault_")}
    assert by_run == {"0/2", "1/2"}, ran  # each run took some
    assert ("rest", "1/2") in [tuple(r) for r in ran]
    assert "in the other run" in out and "skipped" not in out, out
