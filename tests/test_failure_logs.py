"""`failure_logs`: what a failed test's report carries of its services' logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import failure_logs

pytestmark = pytest.mark.unit


def test_a_log_shows_its_last_lines_and_its_last_warnings_first(tmp_path: Path) -> None:
    lines = [f'{{"event": "step", "n": {i}, "level": "info"}}' for i in range(100)]
    lines[10] = '{"event": "notify.retry", "level": "warning"}'
    lines.append("x" * 1_000)
    (tmp_path / "notify.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = failure_logs.section(tmp_path)
    first, last = text.index("last warnings and errors"), text.index("last lines")
    assert first < text.index("notify.retry") < last  # an early warning survives the tail
    assert '"n": 99' in text and '"n": 50' not in text  # the tail only
    assert "x" * failure_logs.WIDTH in text and "x" * (failure_logs.WIDTH + 1) not in text


def test_logs_one_level_down_are_found_and_no_log_gives_nothing(tmp_path: Path) -> None:
    assert failure_logs.section(tmp_path) == "" and failure_logs.section(None) == ""
    (tmp_path / "worker-1").mkdir()
    (tmp_path / "worker-1" / "intake.log").write_text("started\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a log\n", encoding="utf-8")
    text = failure_logs.section(tmp_path)
    assert "intake.log: last lines" in text and "started" in text and "not a log" not in text
    assert "warnings" not in text  # a log with none has no such part
