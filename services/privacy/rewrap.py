"""Re-wrapping data keys under the current key-encryption key, so that an old KEK can be retired (ADR 0015).

`plan` is pure: given both key topics as read to their end (`KeyLog`), it re-wraps each
live key record (its record key's last record, not a tombstone, not a mark) whose KEK is
not the current one: same subject, key id, creation and expiry, the data key wrapped
under the current KEK. A key that is erased (its record key tombstoned once, or its
subject's erasure mark covering its creation, as every keyring judges) or expired is
never written again; a record under a KEK not given, or damaged, is counted, not written.
`rewrap_keys` is the shell: read, write the new records (compaction drops the old ones on
the compacted topic, retention on the expiring one), then read again and tombstone any
record written that an erasure reached meanwhile (`erase.tombstone_late_copies`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aiokafka import ConsumerRecord

from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord
from schemas.topics import KEYS_APPLICANTS, KEYS_DEAD_LETTERS, TransactionalId, transactional_id
from services.common import clients, transactions
from services.common.changelog import read_to_end
from services.common.closing import Abandoned, answered_within, start_within, stop_writer
from services.common.settings import KafkaConnection
from services.privacy import crypto, required_topics
from services.privacy.crypto import PrivacyError
from services.privacy.erase import tombstone_late_copies
from services.privacy.key_records import encoded
from services.privacy.store import key_topics

Outcome = Literal["rewrapped", "erased", "unreadable", "current"]
"""What a live key record gets: written under the current KEK; skipped as erased (or expired); counted as
unreadable (a KEK not given, damage); left as it is (already under the current KEK)."""
ALWAYS = datetime.max.replace(tzinfo=UTC)
"""The mark of a subject whose mark does not parse: every key of theirs is taken as erased (never written again)."""
BATCH = 5_000
"""Re-wrapped records per transaction."""


@dataclass
class KeyLog:
    """The key topics as read: each record key's last record (value, timestamp) per topic, the record keys
    tombstoned at least once (a tombstone is final: key ids are never made twice), each subject's latest mark."""

    latest: dict[tuple[str, bytes], tuple[bytes | None, int]] = field(default_factory=dict)
    tombstoned: set[bytes] = field(default_factory=set)
    marks: dict[str, datetime] = field(default_factory=dict)

    def add(self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        if key is None:
            return
        self.latest[topic, key] = (value, timestamp_ms)
        subject, _, key_id = key.decode("utf-8", "replace").rpartition("/")
        if value is None:
            self.tombstoned.add(key)
        elif key_id == ERASED_MARK:
            self.marks[subject] = max(_mark_time(subject, value), self.marks.get(subject, _mark_time(subject, value)))

    def erased(self, record: KeyRecord) -> bool:
        mark = self.marks.get(record.subject)
        return record.record_key in self.tombstoned or (mark is not None and record.created_at <= mark)


def _mark_time(subject: str, value: bytes) -> datetime:
    try:
        mark = ErasureMark.model_validate_json(value, extra="ignore")  # a newer mark's added members ignored, as
    except ValueError:  # the key stores read it (ADR 0035): read strictly, it covered every key of its subject here
        return ALWAYS
    return mark.created_up_to if mark.subject == subject else ALWAYS


@dataclass(frozen=True)
class Rewrapped:
    """A record to write: the same record key, its key wrapped under the current KEK; on the expiring topic its
    original timestamp (the copy leaves with the retention its first record had), on the compacted one none (the
    broker's now: copies stamped with their keys' creation times, years apart, each rolled a segment of the topic's
    hour, one per hour of history; review)."""

    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int | None


@dataclass
class Plan:
    records: list[Rewrapped] = field(default_factory=list)
    counts: dict[str, Counter[Outcome]] = field(default_factory=dict)
    """Per topic, how many live key records had each outcome."""

    def count(self, outcome: Outcome) -> int:
        return sum(c[outcome] for c in self.counts.values())


def plan(log: KeyLog, keks: Mapping[str, bytes], kek_id: str, now: datetime) -> Plan:
    """Every live key record of `log` not under `kek_id`, re-wrapped under it; nothing erased or expired."""
    if len(keks.get(kek_id, b"")) != crypto.KEY_BYTES:
        raise PrivacyError(f"the current KEK {kek_id!r} is not {crypto.KEY_BYTES} bytes")
    out = Plan()
    for (topic, key), (value, timestamp_ms) in log.latest.items():
        if value is None or key.endswith(f"/{ERASED_MARK}".encode()):
            continue
        outcome = _rewrapped(log, key, value, keks, kek_id, now)
        if isinstance(outcome, bytes):
            expiring = topic.endswith(KEYS_DEAD_LETTERS.name)
            out.records.append(Rewrapped(topic, key, outcome, timestamp_ms if expiring else None))
            outcome = "rewrapped"
        out.counts.setdefault(topic, Counter())[outcome] += 1
    return out


def _rewrapped(log: KeyLog, key: bytes, value: bytes, keks: Mapping[str, bytes], kek_id: str,
               now: datetime) -> bytes | Outcome:
    try:
        record = KeyRecord.model_validate_json(value)
    except ValueError:
        return "unreadable"
    if record.record_key != key:
        return "unreadable"
    if log.erased(record) or (record.expires_at is not None and record.expires_at <= now):
        return "erased"
    if record.kek_id == kek_id:
        return "current"
    if (old := keks.get(record.kek_id)) is None:
        return "unreadable"
    try:
        dek = crypto.unwrap(old, record.wrapped, record.subject, record.key_id)
    except (crypto.Tampered, ValueError):  # ValueError: an old KEK of the wrong length (settings refuse it)
        return "unreadable"
    wrapped = crypto.wrap(keks[kek_id], dek, record.subject, record.key_id)
    return encoded(record.model_copy(update={"kek_id": kek_id, "wrapped": wrapped}))


def late_copies(log: KeyLog, written: Iterable[tuple[str, bytes]]) -> dict[str, set[bytes]]:
    """Of the records written, those whose last record is still the live copy of a key erased since (tombstoned
    before the copy landed, or under a mark that covers it): to tombstone."""
    late: dict[str, set[bytes]] = {}
    for topic, key in written:
        value, _ = log.latest.get((topic, key), (None, 0))
        if value is None:
            continue
        try:
            record = KeyRecord.model_validate_json(value)
        except ValueError:
            continue
        if log.erased(record):
            late.setdefault(topic, set()).add(key)
    return late


async def read_key_log(conn: KafkaConnection, namespace: str) -> KeyLog:
    """Both key topics' committed records, from the beginning to their current end."""
    log = KeyLog()
    for topic, spec in zip(key_topics(namespace), (KEYS_APPLICANTS, KEYS_DEAD_LETTERS), strict=True):
        def add(_: int, record: ConsumerRecord[bytes, bytes], topic: str = topic) -> None:
            log.add(topic, record.key, record.value, record.timestamp)

        await read_to_end(conn, topic, range(spec.partitions), add, client_id="commune-bus-keys-rewrap-read",
                          settle_s=None)  # every key, also past a dead writer's open transaction (ADR 0037)
    return log


@dataclass(frozen=True)
class Report:
    plan: Plan
    tombstoned: int = 0
    """Records written that an erasure reached meanwhile, tombstoned again."""

    def summary(self, kek_id: str, *, dry_run: bool) -> str:
        """One line of counts per topic (never a subject)."""
        verb = "would re-wrap" if dry_run else "re-wrapped"
        parts = [f"{topic}: {c['rewrapped']} {verb}, {c['erased']} skipped (erased or expired), "
                 f"{c['unreadable']} unreadable, {c['current']} already under it"
                 for topic, c in sorted(self.plan.counts.items())]
        late = f"; {self.tombstoned} erased meanwhile, tombstoned again" if self.tombstoned else ""
        return f"keys under {kek_id}: " + ("; ".join(parts) or "no key records") + late


async def rewrap_keys(conn: KafkaConnection, namespace: str, keks: Mapping[str, bytes], kek_id: str, *,
                      dry_run: bool = False, now: datetime | None = None) -> Report:
    """Re-wrap every live key not under `kek_id` (`plan`); with `dry_run`, only count, writing nothing.
    `TopicsMissing` (nothing read or written) when the namespace has no key topics: a mistyped one, or no key yet."""
    await required_topics.require(conn, list(key_topics(namespace)))
    planned = plan(await read_key_log(conn, namespace), keks, kek_id, now or datetime.now(UTC))
    if dry_run or not planned.records:
        return Report(planned)
    producer = clients.transactional_producer(
        conn, transactional_id=transactional_id(TransactionalId.KEYS_REWRAP, namespace, uuid.uuid4().hex),
        client_id="commune-bus-keys-rewrap")
    await start_within("privacy", "key re-wrap writer", producer)  # StartUnanswered: a broker giving it no producer id
    abandoned: Abandoned = set()  # a transaction given up (Unanswered: a broker gone silent; the ones before stand)
    try:
        async def write(records: list[Rewrapped]) -> None:
            async with transactions.transaction(producer):
                await transactions.all_sent([await producer.send(r.topic, r.value, key=r.key,
                                                                 timestamp_ms=r.timestamp_ms) for r in records])

        for start in range(0, len(planned.records), BATCH):
            await answered_within(write(planned.records[start:start + BATCH]), "a re-wrap transaction",
                                  abandoned=abandoned)
        written = [(r.topic, r.key) for r in planned.records]

        async def erased_meanwhile() -> dict[str, set[bytes]]:
            return late_copies(await read_key_log(conn, namespace), written)

        tombstoned = await tombstone_late_copies(producer, erased_meanwhile, abandoned)
    finally:
        await stop_writer("privacy", "key re-wrap writer", producer, abandoned)
    return Report(planned, tombstoned)
