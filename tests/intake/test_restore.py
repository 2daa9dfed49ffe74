"""Restoring de-duplication state (`services.intake.restore`): an unreadable changelog record is skipped, logged by
its place and kind of problem and counted, and the records around it are restored (no broker: the changelog's
records are handed to the restore's own apply)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from unittest.mock import patch

import pytest
import structlog
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from schemas.events import Family
from services.common.settings import KafkaConnection
from services.intake import restore
from services.intake.dedup import SeenByPartition, changelog_record, published_key

pytestmark = pytest.mark.unit

SOURCE = "/communes/02269/mc"
SECRET = "008123456789"
"""A citizen's number as an event id: no log line may hold it."""


def changelog(records: Iterable[tuple[bytes | None, bytes | None]], partition: int = 3
              ) -> list[tuple[int, ConsumerRecord[bytes, bytes]]]:
    return [(partition, ConsumerRecord("ns.commune.intake.dedup", partition, offset, 0, 0, key, value, None,
                                       len(key or b""), len(value or b""), []))
            for offset, (key, value) in enumerate(records)]


async def restored(records: list[tuple[int, ConsumerRecord[bytes, bytes]]],
                   wanted: set[tuple[Family, int]]) -> SeenByPartition:
    """`records` through `restore_seen`'s apply, as `read_to_end` hands them over."""
    async def read_to_end(conn: Any, topic: str, partitions: Any, apply: Any, **options: Any) -> int:
        for partition, rec in records:
            apply(partition, rec)
        return len(records)

    seen = SeenByPartition()
    with patch.object(restore, "read_to_end", read_to_end):
        await restore.restore_seen(KafkaConnection(bootstrap="127.0.0.1:1"), "ns.commune.intake.dedup", wanted, seen)
    return seen


def skipped() -> float:
    return REGISTRY.get_sample_value("commune_intake_restore_skipped_total") or 0.0


UNREADABLE: list[tuple[bytes | None, bytes | None, str]] = [
    (b"dossier:3:7", None, "a tombstone"),
    (None, b'{"at": 1, "keys": ["x"]}', "no key"),
    (b"dossier:3:8", b"{}", "no integer time"),
    (b"dossier:3:9", b"not json " + SECRET.encode(), "not JSON"),
    (b"dossiers:0:1", b'{"at": 1, "keys": ["' + SECRET.encode() + b'"]}', "an unknown family"),
    (b"dossier:3:10", b'{"at": 1, "keys": 5}', "keys not a list of strings"),
    (b"dossier:3:11", b'{"at": 1, "ids": [["' + SECRET.encode() + b'"]]}', "ids not a list of strings"),
    (b"dossier:3:12", b'["' + SECRET.encode() + b'"]', "not a JSON object"),
    (b"dossier:3:13", b'{"at": true, "keys": []}', "no integer time"),
]


async def test_valid_records_around_unreadable_ones_are_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A changelog with every kind of unreadable record between valid ones (the current form and the earlier bare
    ids): each valid record is restored, each unreadable one skipped, counted and logged once with its place and its
    kind of problem, never its key or value. Before, the first one raised out of the restore: intake ended at every
    start."""
    first, second = published_key(SOURCE, "evt-1"), published_key(SOURCE, SECRET)
    before = skipped()
    records = changelog([changelog_record("dossier", 3, 0, [first], 1_000),
                         *((key, value) for key, value, _ in UNREADABLE),
                         (b"dossier:3:20", b'{"at": 2000, "ids": ["legacy-1"]}'),
                         changelog_record("dossier", 3, 30, [second], 3_000),
                         changelog_record("announcement", 3, 0, [published_key(SOURCE, "a-1")], 3_000)])
    with capture_logs() as logs:
        monkeypatch.setattr(restore, "log", structlog.get_logger("intake"))
        seen = await restored(records, {(Family.DOSSIER, 3)})
    ids = seen.of(Family.DOSSIER, 3)
    assert ids.published(SOURCE, "evt-1") and ids.published(SOURCE, SECRET) and ids.published("/any", "legacy-1")
    assert len(seen) == 3, "the announcement's ids are not this worker's"
    assert skipped() - before == len(UNREADABLE)
    lines = [e for e in logs if e["event"] == "dedup.restore_skipped"]
    assert [(e["partition"], e["offset"], e["problem"]) for e in lines] == [
        (3, offset, problem) for offset, (_, _, problem) in enumerate(UNREADABLE, start=1)]
    assert all(set(e) == {"event", "log_level", "partition", "offset", "problem"} for e in lines)
    assert SECRET not in repr(logs)
