"""typings/aiokafka (the project's aiokafka stubs) agrees with the aiokafka installed.

`make lint` checks every stub with mypy's stubtest; this checks the generated part is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_errors_stub_is_generated_from_the_installed_aiokafka() -> None:
    """typings/aiokafka/errors.pyi is what typings/generate_errors.py writes for the installed version."""
    sys.path.insert(0, str(ROOT / "typings"))
    try:
        import generate_errors
    finally:
        sys.path.remove(str(ROOT / "typings"))
    assert generate_errors.TARGET.read_text() == generate_errors.render(), (
        "regenerate: .venv/bin/python typings/generate_errors.py")
