"""Per-test namespaces: each test's is its own for the whole run, however few random digits it has."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import naming
from tests.chaos.scenario import broker_for

pytestmark = pytest.mark.unit


def drawn(*hexes: str) -> Iterator[uuid.UUID]:
    """`uuid.uuid4` giving these in turn (each padded to a whole UUID): the random draws a run may get."""
    return iter(uuid.UUID(h.ljust(32, "0")) for h in hexes)


def test_a_suffix_drawn_again_is_not_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second draw repeats the first (1 in 4,096 for `unique(8)`): the suffix handed out is the third draw."""
    monkeypatch.setattr(naming, "_GIVEN", set(), raising=False)  # absent before the fix
    draws = drawn("abc", "abc", "def")
    monkeypatch.setattr(naming.uuid, "uuid4", lambda: next(draws))
    assert [naming.unique(8), naming.unique(8)] == [naming.RUN + "abc", naming.RUN + "def"]


def test_two_chaos_rows_of_one_run_never_share_a_namespace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CI: metrics-sigkill drew the namespace of intake-sigkill, run before it in the same pytest process, whose topics
    still held intake's canonical events; its workers counted them, 120 series above the oracle."""
    monkeypatch.setattr(naming, "_GIVEN", set(), raising=False)  # absent before the fix
    draws = drawn("5e1", "5e1", "a07")
    monkeypatch.setattr(naming.uuid, "uuid4", lambda: next(draws))

    async def namespaces() -> list[str]:
        out = []
        for row in ("intake-sigkill", "metrics-sigkill"):
            async with broker_for("shared", "127.0.0.1:9", tmp_path / row) as stage:
                out.append(stage.namespace)
        return out

    first, second = asyncio.run(namespaces())
    assert first != second


def test_a_length_whose_every_suffix_was_handed_out_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`unique(6)` has one hex digit: 16 suffixes, then an error rather than a namespace some test already has."""
    monkeypatch.setattr(naming, "_GIVEN", set(), raising=False)  # absent before the fix
    suffixes = {naming.unique(6) for _ in range(16)}
    assert len(suffixes) == 16
    with pytest.raises(RuntimeError, match="no suffix of 6 characters left unused"):
        naming.unique(6)
