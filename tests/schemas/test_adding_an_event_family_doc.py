"""docs/adding-an-event-family.md works: its Python blocks, run in order, add a complete toy event type."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from event_strings import unchecked_strings
from event_tables import TABLES, exercise, isolated_registries, missing_entries, stale_entries

from schemas import asyncapi, export
from schemas.events import EVENT_TYPES, FAMILY_OF_TYPE, Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Rejected

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "adding-an-event-family.md"
TOY = "vn.communebus.mobile-team.toy-demo.v1"
RULES, HANDLERS, SAMPLES = TABLES
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

STILL_MISSING: list[tuple[str, set[str]]] = [
    ("schemas/mobile_team.py", set()),  # the model alone is not registered: nothing is missing yet
    ("schemas/events.py", {RULES, HANDLERS, SAMPLES}),
    ("services/notify/rules.py", {HANDLERS, SAMPLES}),
    ("services/metrics/teams.py", {HANDLERS, SAMPLES}),
    ("services/metrics/handlers.py", {SAMPLES}),
    ("tests/schemas/schema_samples.py", set()),
]
"""Per Python block of the guide, in order: the file it edits (its first-line comment) and the tables
that still lack the toy type once the block has run."""


def blocks() -> list[tuple[str, str]]:
    """The guide's Python blocks as (file named by the first-line comment, code)."""
    found = []
    for code in BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        first = code.splitlines()[0]
        assert first.startswith("# ") and ":" in first, f"a Python block must start with '# <file>: ...': {first!r}"
        found.append((first[2:].split(":", 1)[0], code))
    return found


@pytest.fixture
def isolated() -> Iterator[None]:
    with isolated_registries():
        yield
    assert TOY not in EVENT_TYPES and missing_entries() == {} and stale_entries() == {}


def test_guide_blocks_edit_the_files_it_names_in_the_expected_order() -> None:
    """Each block names a real file; together they are the model, the registration and the three entries."""
    named = [path for path, _ in blocks()]
    assert named == [path for path, _ in STILL_MISSING]
    assert all((ROOT / path).is_file() for path in named)


def test_following_the_guide_adds_a_complete_type(isolated: None) -> None:
    """Run block by block, the completeness check flags exactly the tables not yet done, then nothing."""
    namespace: dict[str, Any] = {"__name__": "guide_toy"}
    for (path, code), (_, missing_after) in zip(blocks(), STILL_MISSING, strict=True):
        exec(compile(code, f"{GUIDE.name}: {path}", "exec", dont_inherit=True), namespace)
        assert {table: [TOY] for table in missing_after} == missing_entries(), path
    assert FAMILY_OF_TYPE[TOY] is Family.MOBILE_TEAM and stale_entries() == {}
    event, part = exercise(TOY)
    counts = part.communes[event.commune].counts
    assert counts[("trainings",)] == 1 and counts[("attendees",)] == 25  # the guide: counted like a training


def test_the_guides_type_keeps_the_identifier_and_text_rules(isolated: None) -> None:
    """The toy's strings are identifiers or NFC text (`event_strings`): an id carrying a CR/LF or a bidirectional
    override is refused, a village typed decomposed is published precomposed. Before, the guide declared them
    `str = Field(...)`, and intake published both as sent."""
    namespace: dict[str, Any] = {"__name__": "guide_toy"}
    for _, code in blocks():
        exec(compile(code, GUIDE.name, "exec", dont_inherit=True), namespace)
    assert unchecked_strings(EVENT_TYPES[TOY]) == []

    def intake(demo_id: str) -> Any:
        return normalise(Family.MOBILE_TEAM, json.dumps({
            "specversion": "1.0", "id": "m-1", "source": "/communes/02269/mobile-team", "type": TOY,
            "time": "2025-11-03T08:00:00+07:00", "subject": "D-1", "commune": "02269", "province": "08",
            "data": {"demo_id": demo_id, "team_id": "T01", "village": "Tho\u0302n Na\u0300 Pa\u0300n",
                     "held_at": "2025-11-03T08:00:00+07:00", "attendees": 25}}).encode())

    accepted = intake("D-1")
    assert isinstance(accepted, Accepted) and accepted.event.data.village == "Th\u00f4n N\u00e0 P\u00e0n"
    for bad in ("D-1\r\nX-Injected: 1", "D-1\u202e"):
        refused = intake(bad)
        assert isinstance(refused, Rejected)
        assert (refused.rejection.reason.value, refused.rejection.field) == ("invalid_field", "data.demo_id")


def test_new_type_only_adds_a_schema_file_until_make_schemas(isolated: None) -> None:
    """With the toy registered, the export has one new file, no breaking change, and AsyncAPI lists the type."""
    namespace: dict[str, Any] = {"__name__": "guide_toy"}
    for _, code in blocks():
        exec(compile(code, GUIDE.name, "exec", dont_inherit=True), namespace)
    current, committed = export.schema_files(), export.committed_files()
    assert set(current) - set(committed) == {f"{TOY}.json"}
    assert export.breaking_changes(committed, current) == {}
    assert "mobileTeamToyDemoV1" in asyncapi.document()["components"]["messages"]


def test_guide_names_real_files_and_tables() -> None:
    """Every repository path the guide mentions exists, and the tables it names are where it says."""
    text = GUIDE.read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:schemas|services|tests|infra|docs)/[\w./-]*)`", text))
    assert paths and [p for p in sorted(paths) if not (ROOT / p).exists()] == []
    for table in TABLES:
        path, name = table.split()
        assert f"`{name}` in `{path}`" in text
        assert re.search(rf"^{name}\b.*=", (ROOT / path).read_text(encoding="utf-8"), re.M), table
    assert "make schemas" in text and ".v2" in text
