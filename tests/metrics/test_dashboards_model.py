"""Every shipped dashboard fits Grafana 11's dashboard model (grafana-foundation-sdk, pinned to an 11.x build).

tests/metrics/test_prometheus_e2e.py evaluates every query of the same dashboards
against a live Prometheus; this checks the JSON itself is a dashboard Grafana 11 reads
as written. The mutation cases prove the check fails on what it must refuse.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.metrics.grafana_model import MODEL_SCHEMA_VERSION, problems

pytestmark = pytest.mark.unit
BOARDS = sorted((Path(__file__).resolve().parents[2] / "infra/grafana/dashboards").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return board


def test_the_model_is_grafana_11() -> None:
    """The pinned SDK build is a Grafana 11 one (its version's release part is 11.x)."""
    assert version("grafana-foundation-sdk").split("!")[-1].startswith("11.")
    assert MODEL_SCHEMA_VERSION >= 39


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.name)
def test_dashboard_fits_grafana_11_model(path: Path) -> None:
    """No unknown field, no wrongly typed value, only known panel and data source plugins."""
    assert problems(load(path)) == []


def test_every_dashboard_is_checked() -> None:
    """The four dashboards of infra/grafana are found (a moved folder must not make the check vacuous)."""
    assert {p.name for p in BOARDS} == {"province-overview.json", "commune-drilldown.json",
                                        "mobile-teams-broadcasts.json", "pipeline-health.json"}


def _first_panel(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def pick(board: dict[str, Any]) -> dict[str, Any]:
        panel: dict[str, Any] = next(p for p in board["panels"] if p["type"] == kind)
        return panel
    return pick


Board = dict[str, Any]


def _set(where: Callable[[Board], Board], key: str, value: object) -> Callable[[Board], None]:
    def mutate(board: dict[str, Any]) -> None:
        where(board)[key] = value
    return mutate


STAT = _first_panel("stat")
MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown dashboard field": (_set(lambda b: b, "refreshRate", "30s"), "$.refreshRate: unknown field"),
    "unknown panel field": (_set(STAT, "heigth", 4), "$.panels[0].heigth: unknown field"),
    "unknown query field": (_set(lambda b: STAT(b)["targets"][0], "expression", "up"),
                            "$.panels[0].targets[0].expression: unknown field"),
    "unknown stat option": (_set(STAT, "options", {"colourMode": "value"}), "$.panels[0].options.colourMode"),
    "bad stat option value": (_set(STAT, "options", {"colorMode": "rainbow"}), "'rainbow' is not one of"),
    "title as a number": (_set(lambda b: b, "title", 5), "$.title: 5 where the model wants a str"),
    "grid width as text": (_set(lambda b: STAT(b)["gridPos"], "w", "6"), "$.panels[0].gridPos.w: '6'"),
    "editable as text": (_set(lambda b: b, "editable", "false"), "$.editable: 'false'"),
    "unknown panel plugin": (_set(STAT, "type", "timeserie"), "'timeserie' is no panel plugin"),
    "query of an unknown data source": (_set(STAT, "datasource", {"type": "promethus", "uid": "p"}),
                                        "no data source plugin the model knows"),
    "bad variable refresh": (_set(lambda b: b["templating"]["list"][0], "refresh", 7), "refresh: 7 is not one of"),
    "bad unit type": (_set(lambda b: STAT(b)["fieldConfig"]["defaults"], "unit", ["percent"]), "unit: ['percent']"),
    "schema newer than the model": (_set(lambda b: b, "schemaVersion", 99), "$.schemaVersion: 99 is newer"),
    "panels not a list": (_set(lambda b: b, "panels", {"a": 1}), "the model cannot decode it"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_mutated_dashboard_fails(name: str) -> None:
    """Each kind of defect, put into a real dashboard that fits the model, is reported with its path."""
    board = load(next(p for p in BOARDS if p.name == "province-overview.json"))
    assert problems(board) == []
    mutated = copy.deepcopy(board)
    mutate, expected = MUTATIONS[name]
    mutate(mutated)
    found = problems(mutated)
    assert found, f"{name}: not reported"
    assert any(expected in p for p in found), found
