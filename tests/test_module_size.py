"""CONTRIBUTING's rule, checked: no module in `schemas/` or `services/` over 300 lines (split by responsibility)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
LIMIT = 300


def test_no_module_of_the_services_or_schemas_is_over_300_lines() -> None:
    """Eleven modules had grown past the limit unnoticed (a rule only a reviewer checked); now a change that takes
    one over it fails here."""
    modules = [p for folder in ("schemas", "services") for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(modules) > 100  # the folders were found
    over = {str(p.relative_to(ROOT)): n for p in modules if (n := len(p.read_text().splitlines())) > LIMIT}
    assert over == {}, f"over {LIMIT} lines (CONTRIBUTING: split by responsibility): {over}"
