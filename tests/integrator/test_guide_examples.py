"""docs/integrators.md's example events, and what it says of the published schemas against what intake takes: the
schemas describe canonical events; intake also takes other time forms, and publishes them canonical."""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from schemas import wire
from schemas.events import FAMILY_OF_TYPE
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Outcome, Rejected
from services.sources.registry import is_allowed, load_registry
from tests.published import problems

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs/integrators.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^( *)```(json|python)\n(.*?)^\1```", re.S | re.M)


def _events(value: Any) -> list[dict[str, Any]]:
    """The events in a parsed example: objects with a `type` of ours and a `data`."""
    if isinstance(value, list):
        return [e for v in value for e in _events(v)]
    is_event = isinstance(value, dict) and str(value.get("type", "")).startswith("vn.communebus.") and "data" in value
    return [value] if is_event else []


def _names_an_event(node: ast.Dict) -> bool:
    keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
    return {"type", "data"} <= keys


def example_events() -> list[dict[str, Any]]:
    """Every event the guide shows: JSON blocks, and the dict literals of its Python blocks."""
    found = []
    for _, language, code in FENCE.findall(GUIDE):
        code = textwrap.dedent(code)
        if language == "json":
            found += _events(json.loads(code))
        else:
            found += [e for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Dict) and _names_an_event(node)
                      for e in _events(ast.literal_eval(node))]
    return found


EXAMPLES = example_events()


def intake(event: dict[str, Any]) -> Outcome:
    return normalise(FAMILY_OF_TYPE[event["type"]], json.dumps(event).encode())


def published(outcome: Outcome) -> dict[str, Any]:
    """The canonical record of an accepted event, put together as the guide tells a subscriber to."""
    assert isinstance(outcome, Accepted), outcome
    record = wire.encode(outcome.event)
    event: dict[str, Any] = {k[3:]: v.decode() for k, v in record.headers if k.startswith("ce_")}
    event["data"] = json.loads(record.value or b"")
    return event


def test_the_guide_shows_its_examples() -> None:
    """The JSON example and the Python one are found (an empty list would prove nothing below)."""
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e["id"])
def test_an_example_event_passes_its_published_schema_and_intake(event: dict[str, Any]) -> None:
    """Formats asserted, the example passes the committed schema of its type, intake accepts it and its source may
    send it (infra/sources.yaml). Before, its times had no offset: accepted by intake, refused as `date-time`."""
    assert problems(event) == []
    assert isinstance(intake(event), Accepted)
    family = FAMILY_OF_TYPE[event["type"]]
    assert is_allowed(load_registry(ROOT / "infra/sources.yaml"), event["source"], family, event["commune"]) is None


@pytest.mark.parametrize(("sent", "utc"), [
    ("2025-11-03T08:10:26", "2025-11-03T01:10:26Z"), ("2025-11-03 08:10", "2025-11-03T01:10:00Z"),
    ("2025-11-03", "2025-11-02T17:00:00Z"), ("20251103081026", "2025-11-03T01:10:26Z")])
def test_an_input_time_form_the_guide_names_is_accepted_and_published_canonical(sent: str, utc: str) -> None:
    """Each input form the guide names (Vietnam time) fails the schema, formats asserted, as the guide warns; intake
    takes it, and what it publishes passes the schema, the time in UTC."""
    assert f"`{sent}`" in GUIDE
    event = {**EXAMPLES[0], "time": sent}
    assert problems(event) != []
    canonical = published(intake(event))
    assert canonical["time"] == utc and problems(canonical) == []


def test_type_is_required_by_the_schema_as_by_intake() -> None:
    """An event without `type` fails the schema of the type it would be, and intake (`missing_field type`). Before,
    the schema let it pass. Without `specversion` intake still takes it (it is 1.0), as the guide says, and what it
    publishes carries it."""
    example = EXAMPLES[0]
    untyped = {k: v for k, v in example.items() if k != "type"}
    assert problems(untyped, example["type"]) == ["(event): 'type' is a required property"]
    refused = normalise(FAMILY_OF_TYPE[example["type"]], json.dumps(untyped).encode())
    assert isinstance(refused, Rejected)
    assert (refused.rejection.reason.value, refused.rejection.field) == ("missing_field", "type")
    unversioned = {k: v for k, v in example.items() if k != "specversion"}
    assert problems(unversioned) == ["(event): 'specversion' is a required property"]
    assert problems(published(intake(unversioned))) == []
