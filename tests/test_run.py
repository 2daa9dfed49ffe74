"""`make test`'s runner (tests/run.py): two or three pytest runs side by side, one exit status hiding no failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import claims, run

pytestmark = pytest.mark.unit


def test_no_tests_collected_in_some_runs_is_success_in_all_not_and_an_error_is_not() -> None:
    """A selection that some runs do not match passes (unit tests only: the fault run collects nothing); one that none
    matches is no success (exit 5), nor is a path that does not exist."""
    assert run.main(["-q", "--co", "tests/test_run.py"]) == 0  # unit tests: the fault run collects nothing
    assert run.main(["-q", "--co", "tests/naming.py"]) == run.NO_TESTS  # a module without tests: nothing at all
    assert run.main(["-q", "--co", "tests/no_such_test_file.py"]) != 0


def test_a_marker_expression_of_the_callers_runs_once(capsys: pytest.CaptureFixture[str]) -> None:
    """With `-m` in the arguments the suite runs once, as asked, without the side-by-side split."""
    assert run.main(["-q", "--co", "-m", "unit", "tests/test_run.py"]) == 0
    assert "side" not in capsys.readouterr().out
    assert run.main(["-q", "--co", "-m", "slow", "tests/test_run.py"]) == run.NO_TESTS  # it selected nothing


def sample(tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           runs: str | None) -> tuple[list[tuple[str, ...]], str]:
    """`tests/claims_sample.py` through `make test`'s runner with `TESTS_RUNS=runs` (None: the default), as in CI:
    which run ran each sample test (its test name and its run's port share), and what the runs printed."""
    log = tmp_path / "ran.log"
    log.touch()
    monkeypatch.setenv("CLAIMS_SAMPLE_LOG", str(log))
    monkeypatch.setenv(claims.LANE, claims.BROKER_FIRST_FROM_THE_LAST)  # as in the run of make test it may be in
    monkeypatch.setenv("CI", "true")
    if runs is None:
        monkeypatch.delenv(run.RUNS_ENV, raising=False)
    else:
        monkeypatch.setenv(run.RUNS_ENV, runs)
    assert run.main(["-q", "-p", "no:cacheprovider", "tests/claims_sample.py"]) == 0
    ran = [tuple(line.split()) for line in log.read_text().splitlines()]
    assert sorted(name for name, _ in ran) == sorted([*(f"fault_{k}" for k in range(6)),
                                                      *(f"broker_{k}" for k in range(4)), "rest"]), ran
    return ran, capfd.readouterr().out


def test_the_three_runs_share_the_tests_each_run_once_and_none_counted_as_a_skip(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault run takes the fault tests from the first, the other two (once done with the rest) from the last; the
    broker run takes the real-broker tests from the last, then the unit tests, the rest run from the first: each test
    runs exactly once, in one run or another, every run takes some, no other test in the fault run, and a test
    another run ran is counted as that, not as a skip, which CI would fail."""
    ran, out = sample(tmp_path, capfd, monkeypatch, None)  # the default
    faults = {share for name, share in ran if name.startswith("fault_")}
    broker = {share for name, share in ran if name.startswith("broker_")}
    assert "0/3" in faults and len(faults) > 1, ran  # the fault run took some, and another run some
    assert next(name for name, share in ran if share == "0/3") == "fault_0", ran  # the fault run's from the first
    assert broker == {"1/3", "2/3"}, ran  # the rest run and the broker run took some
    assert [share for name, share in ran if name == "rest"] == ["1/3"], ran  # the rest run's first: broker_3 waits
    assert "in another run" in out and "skipped" not in out, out


def test_with_two_runs_they_share_the_fault_tests_and_the_rest_run_does_everything_else(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With TESTS_RUNS=2: the fault run and the rest run only; each test once, the fault tests shared."""
    ran, out = sample(tmp_path, capfd, monkeypatch, "2")
    assert {share for name, share in ran if name.startswith("fault_")} == {"0/2", "1/2"}, ran
    assert {share for name, share in ran if not name.startswith("fault_")} == {"1/2"}, ran
    assert "in another run" in out and "skipped" not in out, out
