"""The tracker's partitions: a RocksDB store per owned partition, rebuilt from its changelog partition on assignment.

Partition N of the tracker's input (`commune.notify.deadlines`, key = commune) and partition N of its
changelog are one unit: every change of a dossier of N is written to changelog partition N, key
`<commune>:<dossier>`, value its `TrackedDossier` JSON or a tombstone when it closed. The changelog is
compacted, so it holds about one record per open dossier (a state that is no dossier's is skipped, counted and
deleted from the store: `TrackedPartition.index_all`). A worker restores only the partitions it is
assigned, into fresh stores (no write-ahead log: the changelog is the truth, as for metrics, ADR 0006),
and drops a store when its partition leaves. A store is never reused across runs: a tombstone older than
the topic's `delete.retention.ms` may be gone from the changelog, and a stale local copy would then keep a
closed dossier (and alert on it).

The changelog is the tracker's own internal topic `<app id>-tracked-changelog`, under the prefix the
notify principal already owns for the tracker (`services/common/acls.py`, `own_prefixes`), as faust's
table changelog was (ADR 0001, 0022).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Set
from pathlib import Path

import structlog
from aiokafka import ConsumerRecord

from schemas.topics import NOTIFY_DEADLINES, Group, Kind, TopicSpec, group_id
from services.common.changelog import end_offsets, read_to_end
from services.common.rocks import open_fresh
from services.common.settings import KafkaConnection
from services.notify import metrics
from services.notify.deadline_index import TrackedPartition

log = structlog.get_logger("notify.deadlines")
SKIPPED_REASON = "deadline_state_invalid"
"""The `notify_records_skipped_total` reason of a changelog state that is no `TrackedDossier` (`index_all`)."""


def changelog_spec(namespace: str) -> TopicSpec:
    """The tracker's changelog: compacted, partitioned like its input (partition N = input partition N)."""
    return TopicSpec(
        f"{group_id(Group.NOTIFY_DEADLINES, namespace)}-tracked-changelog", Kind.INTERNAL,
        key="<commune>:<dossier code>", description="Deadline tracker state: the latest TrackedDossier per open "
        "dossier (tombstone once closed), partition = tracker input partition",
        partitions=NOTIFY_DEADLINES.partitions, config={"cleanup.policy": "compact"},
    )


class OwnedPartitions:
    """The tracker's partition stores: only assigned partitions are held, each restored when it arrives."""

    def __init__(self, conn: KafkaConnection, changelog: str, root: Path, client_id: str) -> None:
        self.conn, self.changelog, self.root, self.client_id = conn, changelog, root, client_id
        self.parts: dict[int, TrackedPartition] = {}
        self.ends: dict[int, int] = {}
        """Per held partition, the changelog end offset its store reflects: restored up to, then written by us."""
        self.restored: dict[int, int] = {}
        """Changelog records applied per partition by the last restore of each (what tests and logs show)."""

    def written(self, partition: int, offset: int) -> None:
        """This tracker wrote the changelog record at `offset` of `partition` (acknowledged). A write not at the
        store's end means another tracker wrote there in between: the end is then unknown (-1) and the next
        assignment restores the partition. Taking the larger of the two kept a stale store: a tracker paused past its
        session, whose own late write landed after the other owner's, reached the changelog's end by itself and
        was given the same partition back (audit)."""
        self.ends[partition] = offset + 1 if self.ends.get(partition) == offset else -1

    async def assign(self, numbers: set[int], stale: Set[int] = frozenset()) -> None:
        """Hold exactly `numbers`: drop the stores of partitions that left or are `stale`, restore those missing.

        A kept store is also dropped when its changelog partition has grown past what this tracker restored and
        wrote itself: another tracker owned it meanwhile (this one evicted, paused past its session timeout,
        without ever seeing an assignment that left the partition out), so what it holds may be stale.
        """
        kept = (set(self.parts) & numbers) - set(stale)
        ends = await end_offsets(self.conn, self.changelog, kept, client_id=self.client_id)
        moved = {p for p, end in ends.items() if end != self.ends.get(p)}
        if moved:
            log.info("deadline.store_stale", partitions=sorted(moved))
        for p in (set(self.parts) - numbers) | (set(self.parts) & (set(stale) | moved)):
            self._drop(p)
        arrived = sorted(numbers - set(self.parts))
        if not arrived:
            return
        fresh = {p: TrackedPartition(open_fresh(self.root / f"p{p}")) for p in arrived}
        counts = dict.fromkeys(arrived, 0)

        def apply(partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
            if record.key is not None:
                fresh[partition].load(record.key, record.value)
                counts[partition] += 1

        try:
            await read_to_end(self.conn, self.changelog, arrived, apply, client_id=self.client_id, ends=self.ends)
            for p, part in fresh.items():
                _skipped(p, await part.index_all_yielding())
        except BaseException:
            for p, part in fresh.items():
                _discard(part, self.root / f"p{p}")
            raise
        self.parts.update(fresh)
        self.restored.update(counts)
        log.info("deadline.restored", partitions=arrived, records=sum(counts.values()))

    def close_all(self) -> None:
        """Drop every store and this process's folder (a new run restores from the changelog)."""
        for p in list(self.parts):
            self._drop(p)
        shutil.rmtree(self.root, ignore_errors=True)

    def _drop(self, partition: int) -> None:
        self.ends.pop(partition, None)
        part = self.parts.pop(partition, None)
        if part is not None:
            _discard(part, self.root / f"p{partition}")


def _skipped(partition: int, unreadable: Counter[str]) -> None:
    """Counted (`notify_records_skipped_total{reason="deadline_state_invalid"}`) and logged once per partition and
    kind per restore, with no part of the record: a state that is no dossier's may hold anything."""
    for kind, n in sorted(unreadable.items()):
        metrics.SKIPPED.labels(SKIPPED_REASON).inc(n)
        log.error("deadline.state_skipped", partition=partition, why=kind, states=n)


def _discard(part: TrackedPartition, path: Path) -> None:
    part.db.close()
    shutil.rmtree(path, ignore_errors=True)
