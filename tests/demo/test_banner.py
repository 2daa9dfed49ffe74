"""What the demo prints as "where to look" for the gateway names a path the gateway serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.demo.processes import ROOT, plan
from services.demo.settings import DemoSettings

pytestmark = pytest.mark.unit


def test_the_gateway_paths_the_demo_prints_are_served(tmp_path: Path) -> None:
    """The banner said `http://127.0.0.1:8080/docs`, a page the gateway does not serve (404: FastAPI's pages load
    their scripts from a CDN, services/gateway/app.py): each path it names is in the gateway's contract."""
    settings = DemoSettings(run_dir=tmp_path / "run", state_dir=tmp_path / "state", prometheus=False)
    gateway = next(c for c in plan(settings) if c.name == "gateway")
    contract = json.loads((ROOT / "docs/openapi.json").read_text(encoding="utf-8"))
    served = {*contract["paths"], "/openapi.json"}
    named = re.findall(rf"http://127\.0\.0\.1:{settings.gateway_port}(/[^\s,;)]*)", gateway.where)
    assert named and all(path in served for path in named), gateway.where
