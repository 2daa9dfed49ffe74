"""`validate` says what intake would dead-letter, not only what is invalid by itself: an event repeated in the file
(intake publishes the first and dead-letters the others as `duplicate_event`) and an event too large once canonical and
its applicant sealed (`payload_too_large`), as the gateway refuses both with 422. Before, `validate` passed both files
with exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from services.cli.main import app
from tests.keys_env import PRIVACY_ENV
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
DOCUMENT = "Giấy chứng nhận " + "\u1ec7" * 330
"""The contracts audit's document: 346 characters, 1,012 bytes; 1,000 of them make a record of 1,015,441 bytes, under
intake's 1 MiB raw limit and over its 1,000,000-byte canonical one."""


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**PRIVACY_ENV, "COLUMNS": "300"})


def ndjson(tmp_path: Path, *events: dict[str, object]) -> Path:
    path = tmp_path / "records.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


def test_an_event_repeated_in_the_file_is_named_at_its_line_and_counted_invalid(tmp_path: Path) -> None:
    first, other = canonical_dossier("evt-1"), canonical_dossier("evt-2")
    result = run("validate", str(ndjson(tmp_path, first, other, first)))
    assert result.exit_code == 1, result.output
    assert "3 records, 2 valid, 1 invalid" in result.output
    [line] = [ln for ln in result.output.splitlines() if "duplicate_event" in ln]
    assert "line 3:" in line and "as line 1:" in line, line


def test_an_event_too_large_once_canonical_is_invalid_and_the_small_one_beside_it_valid(tmp_path: Path) -> None:
    big = canonical_dossier("evt-big", status=5, requested_documents=[DOCUMENT] * 1000)
    assert len(orjson.dumps(big)) < 1024 * 1024  # valid by itself: under the raw limit
    result = run("validate", str(ndjson(tmp_path, canonical_dossier("evt-small"), big)))
    assert result.exit_code == 1, result.output
    assert "2 records, 1 valid, 1 invalid" in result.output
    [line] = [ln for ln in result.output.splitlines() if "payload_too_large" in ln]
    assert "line 2" in line and "the limit is 1000000" in line, line


def test_a_file_of_distinct_events_of_ordinary_size_stays_valid(tmp_path: Path) -> None:
    result = run("validate", str(ndjson(tmp_path, *(canonical_dossier(f"evt-{i}") for i in range(5)))))
    assert result.exit_code == 0, result.output
    assert "5 records, 5 valid, 0 invalid" in result.output


def test_the_limits_set_for_intake_are_the_ones_validate_checks(tmp_path: Path) -> None:
    """A deployment's lower `INTAKE_MAX_RECORD_BYTES` / `INTAKE_MAX_CANONICAL_BYTES`, as its intake dead-letters by
    them (`validate` checked intake's defaults and passed such records with exit 0)."""
    record = canonical_dossier("evt-mid", status=5, requested_documents=[DOCUMENT] * 3)
    path = ndjson(tmp_path, canonical_dossier("evt-small"), record)
    assert 3000 < len(orjson.dumps(record)) < 4000
    assert run("validate", str(path)).exit_code == 0
    for variable, limit in (("INTAKE_MAX_RECORD_BYTES", 3000), ("INTAKE_MAX_CANONICAL_BYTES", 3000)):
        result = CliRunner().invoke(app, ["validate", str(path)],
                                    env={**PRIVACY_ENV, "COLUMNS": "300", variable: str(limit)})
        assert result.exit_code == 1, (variable, result.output)
        assert "2 records, 1 valid, 1 invalid" in result.output
        [line] = [ln for ln in result.output.splitlines() if "payload_too_large" in ln]
        assert "line 2" in line and f"{limit}" in line, (variable, line)


def test_a_refused_limit_is_named_by_its_variable_with_exit_2(tmp_path: Path) -> None:
    """As intake would refuse to start on it: one line naming the variable, without its value."""
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "validate",
                           str(ndjson(tmp_path, canonical_dossier("evt-1")))],
                          env={**os.environ, **PRIVACY_ENV, "INTAKE_MAX_RECORD_BYTES": "777"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "commune-bus: INTAKE_MAX_RECORD_BYTES: Input should be greater than or equal to 1024\n"
