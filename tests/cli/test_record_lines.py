"""`validate` names a bad record by the line of the file it begins on, as an editor numbers lines (1-based, blank
lines counted): "record 3" counted from 0 and skipped blank lines, so it was no line a user could jump to (CLI
trial)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.gateway.batch import split_body
from tests.samples import canonical_dossier, with_data

pytestmark = pytest.mark.unit
NDJSON, JSON = "application/x-ndjson", "application/json"


def lines_of(body: bytes, media_type: str) -> list[int]:
    from services.cli.lines import record_lines  # here: the command's test below runs without it (older code)

    return record_lines(body, media_type, split_body(body, media_type))


def test_lines_of_ndjson_count_blank_lines_and_every_line_break() -> None:
    """Blank and whitespace-only lines count, CR LF is one break, a lone CR one too (as `split_body` reads them)."""
    assert lines_of(b'{"a":1}\n\n  \n{"a":2}\r\n{"a":3}\r{"a":4}\n', NDJSON) == [1, 4, 5, 6]
    assert lines_of(b'\n\n{"a":1}\n{"a":1}\n', NDJSON) == [3, 4]  # the same text twice: each its own line
    assert lines_of(b'\n{"a":1}\n\n{"b":2}\n', JSON) == [2, 4]  # NDJSON named .json: read as lines


def test_lines_of_a_json_array_are_where_each_element_begins() -> None:
    """A pretty-printed array: each element's first line, whatever its strings hold (brackets, commas, escaped
    quotes) and however deep it nests; a scalar element too."""
    body = (b'[\n  {"a": "[,{", "b": [1, [2, 3]]},\n\n  {"c": "say \\"]\\" and \\\\"},\n  7,\n'
            b'  {\n    "d": {"e": []}\n  }\n]\n')
    assert lines_of(body, JSON) == [2, 4, 5, 6]


def test_the_line_of_a_lone_json_value_is_its_first() -> None:
    assert lines_of(b'\n\n{\n  "a": 1\n}\n', JSON) == [3]


def test_validate_names_bad_records_by_their_line(tmp_path: Path) -> None:
    """NDJSON with blank lines: the bad records on lines 3 and 6 are said so, the count of records unchanged."""
    good, other = orjson.dumps(canonical_dossier()), orjson.dumps(canonical_dossier("c"))  # one again: bad
    bad = orjson.dumps(with_data(canonical_dossier("b"), status=9))
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join([good, b"", bad, other, b"  ", bad]) + b"\n")
    result = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    said = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert [line.split(": [")[0] for line in said] == [f"{path}: line 3", f"{path}: line 6"], result.output
    assert "4 records, 2 valid, 2 invalid" in result.output
