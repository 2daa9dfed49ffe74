"""The committed JSON Schema files: in sync with the models, valid, and describing real events."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from schema_samples import sample

from schemas import export
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import EVENT_TYPES
from schemas.personal import ERASED_EVENT_TYPE

pytestmark = pytest.mark.unit
COMMITTED = export.committed_files()


def test_committed_files_equal_regenerated_schemas() -> None:
    """Drift: a model changed without `make schemas` fails here."""
    assert export.schema_files() == COMMITTED, "JSON Schemas are out of date: run `make schemas` and commit"


def test_every_event_type_has_a_committed_schema() -> None:
    """Each canonical type has exactly one file named after it, as has the erasure webhook's type."""
    assert {f"{t}.json" for t in EVENT_TYPES} | {export.DEADLETTER_FILE, f"{ERASED_EVENT_TYPE}.json"} == set(COMMITTED)


def test_output_is_deterministic() -> None:
    """Sorted keys and a trailing newline, identical on every run."""
    first, second = export.schema_files(), export.schema_files()
    assert first == second
    for text in first.values():
        assert text.endswith("}\n")
        assert export.render(json.loads(text)) == text


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_committed_file_is_a_valid_draft_2020_12_schema(name: str) -> None:
    """Every committed file passes the JSON Schema meta-schema."""
    schema = json.loads(COMMITTED[name])
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == export.DRAFT


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_sample_event_validates_against_its_schema_and_model(type_name: str) -> None:
    """A valid structured event passes both the schema file and the pydantic model; a broken one fails the schema."""
    schema = json.loads(COMMITTED[f"{type_name}.json"])
    event = sample(type_name)
    EVENT_TYPES[type_name].model_validate(event)
    Draft202012Validator(schema).validate(event)
    broken = copy.deepcopy(event)
    broken["data"]["unexpected_field"] = 1
    assert not Draft202012Validator(schema).is_valid(broken)
    del broken["data"]["unexpected_field"]
    del broken["subject"]
    assert not Draft202012Validator(schema).is_valid(broken)


def test_dead_letter_headers_validate_against_the_header_contract() -> None:
    """Headers written by DeadLetterContext satisfy the dead-letter schema; an unknown reason does not."""
    schema = json.loads(COMMITTED[export.DEADLETTER_FILE])
    ctx = DeadLetterContext(
        reason=Reason.NOT_JSON, field="", message="value is not JSON", source_topic="commune.raw.dossier",
        source_partition=3, source_offset=42, rejected_at="2025-11-03T01:10:26Z",
    )
    headers = {k: v.decode() for k, v in ctx.headers()}
    Draft202012Validator(schema).validate(headers)
    assert not Draft202012Validator(schema).is_valid({**headers, "dlq.reason": "because"})


def test_export_refuses_to_overwrite_with_a_breaking_change(tmp_path: Path) -> None:
    """A published schema is not replaced by an incompatible one unless forced."""
    name = "vn.communebus.dossier.status-changed.v1.json"
    published = json.loads(COMMITTED[name])
    published["$defs"]["DossierStatus"]["enum"].append(11)  # pretend v1 once accepted status 11
    (tmp_path / name).write_text(export.render(published), encoding="utf-8")
    assert export.main(["--dir", str(tmp_path)]) == 1
    assert json.loads((tmp_path / name).read_text(encoding="utf-8")) == published
    assert export.main(["--dir", str(tmp_path), "--allow-breaking"]) == 0
    assert (tmp_path / name).read_text(encoding="utf-8") == COMMITTED[name]


def test_check_mode_reports_drift_without_writing(tmp_path: Path) -> None:
    """`--check` exits 1 on a missing file and writes nothing."""
    assert export.main(["--dir", str(tmp_path), "--check"]) == 1
    assert list(tmp_path.iterdir()) == []


def test_every_dead_letter_header_is_described() -> None:
    """Each described header of the dead-letter schema says what it is (the lookup headers said "None Shape: …" and
    `dlq.replayed` nothing: a string under an enum member is no docstring)."""
    properties = json.loads(COMMITTED[export.DEADLETTER_FILE])["properties"]
    said = {name: p["description"] for name, p in properties.items() if "description" in p}
    assert {"dlq.replayed", "dlq.lookup.id", "dlq.lookup.trace", "dlq.source.written-at"} <= set(said)
    assert not [n for n, d in said.items() if len(d) < 10 or d.startswith("None")], said


def test_the_dead_letter_schema_takes_the_replayed_header_dlq_replay_writes() -> None:
    """`dlq.replayed` is `<partition>:<offset>` (`DeadLetter.position`); the schema's `^\\d+$` refused it, so a replayed
    record dead-lettered again failed the published schema (review)."""
    headers = {"dlq.reason": "invalid_field", "dlq.source.topic": "commune.raw.dossier", "dlq.source.partition": "3",
               "dlq.source.offset": "17", "dlq.replayed": "0:42"}
    assert list(Draft202012Validator(json.loads(COMMITTED[export.DEADLETTER_FILE])).iter_errors(headers)) == []
