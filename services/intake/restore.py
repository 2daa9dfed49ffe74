"""Restoring de-duplication state from its changelog when raw partitions arrive.

Changelog partition p holds the ids published from raw partition p of every
family, so a worker assigned raw partitions reads the same-numbered changelog
partitions to their end (committed records only) and keeps the ids of the
(family, partition) pairs it now owns. A failure to read the changelog raises: the
rebalance listener reports it and the run ends, rather than consuming without the
state. A record that cannot be read does not: it is skipped, logged
(`dedup.restore_skipped`, its place and the kind of problem) and counted
(`commune_intake_restore_skipped_total`). Raised, it ended every start, since the
changelog is read again at each; skipped, it costs at most the de-duplication of
the events it listed, which may be published again within the window.
"""

from __future__ import annotations

import structlog
from aiokafka import ConsumerRecord

from schemas.events import Family
from services.common.changelog import read_to_end
from services.common.settings import KafkaConnection
from services.intake import telemetry
from services.intake.dedup import SeenByPartition, UnreadableChangelog, read_changelog_record

log = structlog.get_logger("intake")


async def restore_seen(conn: KafkaConnection, changelog: str, wanted: set[tuple[Family, int]],
                       seen: SeenByPartition, stall_s: float | None = None) -> int:
    """Load the ids of the `wanted` raw (family, partition) pairs into `seen`; returns how many ids. Raises
    `RestoreStalled` once nothing was read for `stall_s` (the broker gone)."""
    if not wanted:
        return 0
    for family, partition in wanted:
        seen.of(family, partition)  # empty state first: a partition with no changelog records still counts as restored
    restored = 0

    def apply(partition: int, rec: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal restored
        try:
            family, at_ms, keys, legacy_ids = read_changelog_record(rec.key, rec.value)
        except Exception as exc:  # one unreadable record must not end every start: skipped, no content logged
            telemetry.RESTORE_SKIPPED.inc()
            problem = str(exc) if isinstance(exc, UnreadableChangelog) else type(exc).__name__
            log.error("dedup.restore_skipped", partition=partition, offset=rec.offset, problem=problem)
            return
        key = (family, partition)
        if key in wanted:
            ids_of_partition = seen.of(*key)
            for published in keys:
                ids_of_partition.add(published, at_ms)
            for event_id in legacy_ids:
                ids_of_partition.add_legacy(event_id, at_ms)
            restored += len(keys) + len(legacy_ids)

    numbers = sorted({p for _, p in wanted})
    await read_to_end(conn, changelog, numbers, apply, client_id="intake-restore", stall_s=stall_s)
    log.info("dedup.restored", partitions=numbers, ids=restored)
    return restored
