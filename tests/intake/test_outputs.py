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
