"""The backward-compatibility checker, and the committed schemas checked against the current models."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schemas import export
from schemas.compat import incompatibilities
from schemas.limits import EARLIEST_TEXT, LATEST_TEXT, NO_CONTROL_CHARACTERS, SAFETY_LIMIT

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "$defs": {
        "Status": {"enum": [1, 2, 3], "type": "integer"},
        "Data": {
            "additionalProperties": False,
            "properties": {
                "code": {"maxLength": 64, "minLength": 1, "type": "string"},
                "status": {"$ref": "#/$defs/Status"},
                "amount": {"minimum": 0, "type": "number"},
                "tags": {"items": {"type": "string"}, "type": "array"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            },
            "required": ["code", "status"],
            "type": "object",
        },
    },
    "additionalProperties": True,
    "properties": {"data": {"$ref": "#/$defs/Data"}, "time": {"format": "date-time", "type": "string"}},
    "required": ["data"],
    "type": "object",
}


def changed(edit: str, value: Any = None) -> dict[str, Any]:
    """BASE with one edit applied at a slash path; value None deletes."""
    schema = copy.deepcopy(BASE)
    *parents, last = edit.split("/")
    node = schema
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return schema


DATA = "$defs/Data"
BREAKING = {
    "property removed": changed(f"{DATA}/properties/amount"),
    "new required property": changed(f"{DATA}/required", ["code", "status", "amount"]),
    "type changed": changed(f"{DATA}/properties/code/type", "integer"),
    "type narrowed number to integer": changed(f"{DATA}/properties/amount/type", "integer"),
    "nullable became non-null": changed(f"{DATA}/properties/note", {"type": "string"}),
    "enum value removed": changed("$defs/Status/enum", [1, 2]),
    "additionalProperties tightened": changed("additionalProperties", False),
    "maxLength lowered": changed(f"{DATA}/properties/code/maxLength", 32),
    "minimum raised": changed(f"{DATA}/properties/amount/minimum", 1),
    "pattern added": changed(f"{DATA}/properties/code/pattern", "^[A-Z]+$"),
    "array item type changed": changed(f"{DATA}/properties/tags/items", {"type": "integer"}),
    "const added": changed("properties/time/const", "2025-01-01T00:00:00Z"),
    "new typed property where extras were open": changed("properties/extra", {"type": "integer"}),
    "format changed": changed("properties/time/format", "date"),
    "unmarked maxItems added": changed(f"{DATA}/properties/tags/maxItems", 1000),
    "unmarked date range added": changed("properties/time/formatMinimum", EARLIEST_TEXT),
}


def marked(edit: str, **bounds: Any) -> dict[str, Any]:
    """BASE with bounds added to the node at a slash path, marked as a safety limit."""
    schema = copy.deepcopy(BASE)
    node = schema
    for part in edit.split("/"):
        node = node[part]
    node.update(bounds, **{SAFETY_LIMIT: True})
    return schema


CODE, TAGS, TIME = f"{DATA}/properties/code", f"{DATA}/properties/tags", "properties/time"
SAFETY_BREAKING = {
    "marked maxItems below the floor": marked(TAGS, maxItems=10),
    "marked maxLength lowered from an existing bound": marked(CODE, maxLength=32),
    "marked date range narrower than 1975-2100": marked(TIME, formatMinimum="2000-01-01T00:00:00Z"),
    "marked latest time before 2100": marked(TIME, formatMaximum="2099-12-31T23:59:59Z"),
    "marked pattern other than the identifier one": marked(CODE, pattern="^[A-Z]+$"),
}
SAFETY_COMPATIBLE = {
    "marked maxItems added": marked(TAGS, maxItems=1000),
    "marked item maxLength added": marked(f"{TAGS}/items", maxLength=500),
    "marked 1975-2100 range added": marked(TIME, formatMinimum=EARLIEST_TEXT, formatMaximum=LATEST_TEXT),
    "marked identifier pattern added": marked(CODE, pattern=NO_CONTROL_CHARACTERS),
}


@pytest.mark.parametrize("case", sorted(SAFETY_BREAKING))
def test_checker_rejects_safety_limits_tighter_than_their_floor(case: str) -> None:
    """A marked safety limit is no free pass: below its floor, or lowering an existing bound, it is breaking."""
    assert incompatibilities(BASE, SAFETY_BREAKING[case]), case


@pytest.mark.parametrize("case", sorted(SAFETY_COMPATIBLE))
def test_checker_accepts_new_safety_limits_at_or_above_their_floor(case: str) -> None:
    """A bound added where there was none, marked x-safety-limit and no tighter than its floor, is compatible."""
    assert incompatibilities(BASE, SAFETY_COMPATIBLE[case]) == []
COMPATIBLE = {
    "unchanged": copy.deepcopy(BASE),
    "optional property added to closed object": changed(f"{DATA}/properties/channel", {"type": "string"}),
    "enum value added": changed("$defs/Status/enum", [1, 2, 3, 4]),
    "required dropped": changed("required", []),
    "maxLength raised": changed(f"{DATA}/properties/code/maxLength", 128),
    "integer widened to number": changed(f"{DATA}/properties/amount/type", "number"),
    "field made nullable": changed(
        f"{DATA}/properties/code", {"anyOf": [{"type": "string", "maxLength": 64, "minLength": 1}, {"type": "null"}]}),
    "description edited": changed(f"{DATA}/properties/code/description", "MaHoSo"),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_checker_rejects_breaking_change(case: str) -> None:
    """Each deliberately incompatible schema pair yields at least one problem."""
    assert incompatibilities(BASE, BREAKING[case]), case


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_checker_accepts_compatible_change(case: str) -> None:
    """Compatible evolutions (widening, new optional field, docs) yield no problem."""
    assert incompatibilities(BASE, COMPATIBLE[case]) == []


def test_a_property_pinned_to_its_default_may_become_required() -> None:
    """A property whose only value is its default (`const` = `default`, as CloudEvents' `type` and `specversion`) was
    always written, so requiring it is compatible; a property without a default, or with another one, is not."""
    old, new = copy.deepcopy(BASE), copy.deepcopy(BASE)
    new["required"] = ["data", "kind"]
    for schema in (old, new):
        schema["properties"]["kind"] = {"const": "k", "default": "k", "type": "string"}
    assert incompatibilities(old, new) == []
    for kind in ({"const": "k", "type": "string"}, {"const": "k", "default": "j", "type": "string"},
                 {"default": "k", "type": "string"}):
        old["properties"]["kind"] = new["properties"]["kind"] = kind
        assert incompatibilities(old, new) == ["$.kind: property became required"], kind


def test_problem_names_the_path() -> None:
    """A problem says where it is, so a developer can find the field."""
    assert incompatibilities(BASE, BREAKING["enum value removed"]) == ["$.data.status: value 3 removed"]


def test_real_schema_with_status_removed_is_breaking() -> None:
    """Dropping a dossier status from the committed v1 schema is caught."""
    name = "vn.communebus.dossier.status-changed.v1.json"
    old = json.loads(export.committed_files()[name])
    new = copy.deepcopy(old)
    new["$defs"]["DossierStatus"]["enum"].remove(7)
    new["$defs"]["DossierData"]["required"].append("due_at")
    problems = incompatibilities(old, new)
    assert "$.data.status: value 7 removed" in problems
    assert "$.data.due_at: property became required" in problems


def test_current_models_are_compatible_with_committed_schemas() -> None:
    """No model change breaks a committed (published) schema."""
    assert export.breaking_changes(export.committed_files(), export.schema_files()) == {}


def _released_versions() -> list[tuple[str, str, str]]:
    try:
        log = subprocess.run(
            ["git", "log", "--format=%H", "--", "schemas/jsonschema"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return []
    versions = []
    for commit in log:
        names = subprocess.run(
            ["git", "ls-tree", "--name-only", commit, "schemas/jsonschema/"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
        for path in names:
            text = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True).stdout
            versions.append((commit[:10], Path(path).name, text))
    return versions


def test_current_models_are_compatible_with_every_released_version() -> None:
    """Even after `make schemas --allow-breaking`, no schema ever committed in git history is broken."""
    versions = _released_versions()
    if not versions:
        pytest.skip("not a git checkout with committed schemas")
    current = export.schema_files()
    broken = {
        f"{commit}:{name}": problems
        for commit, name, text in versions
        if (problems := export.breaking_changes({name: text}, current).get(name))
    }
    assert broken == {}
