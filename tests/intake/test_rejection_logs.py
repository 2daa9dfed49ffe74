"""A flood of bad records is counted whole and logged sparingly: one `record.rejected` line per family and reason
every `sparse.EVERY_S`, naming the record that passed and how many it stands for (in process, no broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from structlog.testing import capture_logs

from schemas.topics import RAW_DOSSIER
from services.common.sparse import EVERY_S, Sparse
from services.intake import validate
from services.intake.dedup import SeenByPartition
from services.intake.outputs import TransactionOutputs
from services.intake.settings import IntakeSettings
from services.intake.validate import Topics, Validation

pytestmark = pytest.mark.unit


def not_json(offsets: range) -> Iterator[ConsumerRecord[bytes, bytes]]:
    for offset in offsets:
        yield ConsumerRecord(RAW_DOSSIER.name, 0, offset, 0, 0, None, b"{not json", None, -1, 9, [])


async def test_a_flood_of_bad_records_is_counted_whole_and_logged_sparingly(monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 records that are not JSON: 3,000 dead letters counted, one line (state audit: a line each, 218 bytes of
    log a record, at the rate of whoever sends them); after `EVERY_S`, the next line stands for the ones between."""
    now = [1000.0]
    monkeypatch.setattr(validate, "REJECTIONS_LOGGED", Sparse(clock=lambda: now[0]))
    topics = Topics.of("")
    partitions = dict.fromkeys(topics.counted, RAW_DOSSIER.partitions)
    validation = Validation(topics, partitions, SeenByPartition(), IntakeSettings(sources_file=None))
    out = TransactionOutputs(None, partitions)  # type: ignore[arg-type]
    tp = TopicPartition(RAW_DOSSIER.name, 0)
    with capture_logs() as logs:
        await validation.partition(tp, list(not_json(range(3000))), out)
        now[0] += EVERY_S
        await validation.partition(tp, list(not_json(range(3000, 3001))), out)
    assert sum(out.outcomes.values()) == 3001
    lines = [(e["reason"], e["offset"], e["rejected_since_last"]) for e in logs if e["event"] == "record.rejected"]
    assert lines == [("not_json", 0, 1), ("not_json", 3000, 3000)]
