"""A transaction's outputs are bounded by records and by raw bytes (pure; no broker)."""

from __future__ import annotations

import pytest

from services.intake.outputs import TransactionOutputs
from services.intake.settings import IntakeSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("records", "raw_bytes", "full"), [
    (0, 0, False),
    (1999, 16 * 1024 * 1024 - 1, False),
    (2000, 0, True),  # the record cap
    (1, 16 * 1024 * 1024, True),  # one fetch of large records: the byte cap
])
def test_full_at_either_cap(records: int, raw_bytes: int, full: bool) -> None:
    """A transaction takes no further fetch once it holds the record cap or the byte cap."""
    settings = IntakeSettings()
    out = TransactionOutputs(producer=None, partitions={})  # type: ignore[arg-type]  # `full` does not produce
    out.records, out.bytes = records, raw_bytes
    assert out.full(settings.batch_max_records, settings.batch_max_bytes) is full


def test_intake_checks_sources_against_the_registry_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default intake loads `infra/sources.yaml`, as the gateway does (before: no registry unless
    INTAKE_SOURCES_FILE named one, so the demo's intake published any source; walkthrough finding 1); set empty, it
    takes every source and says so."""
    from structlog.testing import capture_logs

    from services.intake.worker import source_registry

    monkeypatch.delenv("INTAKE_SOURCES_FILE", raising=False)
    registry = source_registry(IntakeSettings())
    assert registry is not None and "thuong-lam-one-stop" in {entry.id for entry in registry.sources}
    monkeypatch.setenv("INTAKE_SOURCES_FILE", "")
    with capture_logs() as logs:
        assert source_registry(IntakeSettings()) is None
    assert [e["event"] for e in logs] == ["intake.every_source_allowed"]
