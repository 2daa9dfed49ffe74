"""Validating one fetch: each raw record becomes a canonical record, a dead letter or a re-routed raw record.

De-duplication is exact only if every copy of an event reaches the same raw
partition, and a producer that does not key by commune (kcat without -K, a
default producer) scatters copies over partitions. So a valid record whose
commune does not hash to the raw partition it arrived on is not published
there: the original record (bytes and headers, plus `intake.rerouted-from`) is
sent again, keyed by its commune, to the commune's partition of the same raw
topic, in the same transaction as the input offset (exactly once). The owner of
that partition de-duplicates and publishes it. A record that cannot be
attributed to a commune is dead-lettered where it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog
from aiokafka import ConsumerRecord, TopicPartition

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import (
    BROKER_MESSAGE_BYTES,
    CANONICAL,
    CANONICAL_RECORD_BYTES,
    DEAD_LETTER_HEADROOM,
    DLQ_INTAKE,
    INTAKE_DEDUP,
    MAX_RECORD_BYTES,
    RAW,
    STAMPED_BY_BROKER,
    TopicSpec,
    scoped,
)
from services.common.admin import TopicConfigError, described_configs, ensure_topics, list_topics
from services.common.partitioner import partition_for
from services.common.sparse import Sparse
from services.intake import telemetry
from services.intake.decide import Decider, SourcePolicy, allow_all
from services.intake.dedup import SeenByPartition, changelog_record, published_key
from services.intake.lookup import lookup_names
from services.intake.outcome import Accepted
from services.intake.outputs import REROUTED_FROM, TransactionOutputs, fits_canonical, written_at
from services.intake.settings import IntakeSettings
from services.privacy.intake import IntakePrivacy
from services.sources import topics as source_topics
from services.sources.registry import SourceRegistry

log = structlog.get_logger("intake")
REJECTIONS_LOGGED = Sparse()
"""One `record.rejected` line per family and reason every `sparse.EVERY_S` at most, naming the record that passed and
how many it stands for: every rejected record is a dead letter (`commune-bus dlq list`) and counted
(`commune_intake_records_rejected_total`); a line each let one source's flood of bad records fill the log at its own
rate (state audit: 218 bytes of log a record)."""
YIELD_AFTER_S = 0.0002
"""Validation gives the event loop a turn this often, so the commit in flight keeps moving: its five round trips
(AddPartitionsToTxn, produce, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) each wait for a turn, and aiokafka's sender
takes two or three turns between them. At 2,000 events/s, a turn every 2 ms made each round trip 1.2-3.3 ms
(0.4-0.5 ms in the forwarding floor) and the p99 3.8x the floor's; every 0.2 ms, 2.2-2.7x (docs/benchmarks.md,
"intake's commit chain"). A turn costs one loop iteration (a few µs); one per record was worse (6-22x: the loop's
own work saturated the core)."""
DEAD_LETTER_BYTES = MAX_RECORD_BYTES + DEAD_LETTER_HEADROOM - 1024
"""What one dead letter may hold, key, value and headers with their lengths, below `DLQ_INTAKE`'s limit (the rest is
the batch's own bytes). A raw record under the raw topics' limit can still pass it as a dead letter: thousands of
headers, each packed with its lengths and sealed, or a value its producer compressed (the broker limits the
compressed batch; a sealed value does not compress). Such a dead letter keeps less (`Validation._dead_letter`):
refused, it aborted every transaction holding it, run after run (review M5)."""


def _dead_letter_bytes(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """At least the bytes a record of these takes in a batch (each header's two lengths at most 10 bytes; a name's
    bytes as sent, UTF-8: counted in characters, names of "ố" passed as a third of their size; review)."""
    return (len(key or b"") + len(value or b"")
            + sum(len(k.encode("utf-8", "surrogatepass")) + len(v or b"") + 10 for k, v in headers) + 64)


@dataclass(frozen=True)
class Topics:
    """The topic names intake reads and writes, in one namespace."""

    family_of: dict[str, Family]
    """raw topic -> its family: the shared raw topics, and each registered source's bound ones"""
    canonical: dict[Family, str]
    dlq: str
    changelog: str
    policy_of: dict[str, SourcePolicy]
    """raw topic -> who may publish what there: the registry's rule on a shared topic, the entry's own on a topic
    bound to it (`services.sources.topics`); everyone when intake runs without a registry"""

    @classmethod
    def of(cls, namespace: str, registry: SourceRegistry | None = None) -> Topics:
        family_of = {scoped(RAW[f], namespace).name: f for f in Family}
        policy_of: dict[str, SourcePolicy] = dict.fromkeys(family_of, allow_all)
        if registry is not None:
            family_of |= {t: f for t, (f, _) in source_topics.bound_topics(registry, namespace).items()}
            policy_of = dict(source_topics.policies(registry, namespace))
        return cls(family_of, {f: scoped(CANONICAL[f], namespace).name for f in Family},
                   scoped(DLQ_INTAKE, namespace).name, scoped(INTAKE_DEDUP, namespace).name, policy_of)

    @property
    def raw_specs(self) -> list[TopicSpec]:
        """The raw topics to create: shared and bound (same partitions and config as their family's shared one)."""
        return [replace(RAW[f], name=t) for t, f in self.family_of.items()]

    @property
    def counted(self) -> list[str]:
        """The topics whose real partition counts place records: raw (re-routing) and canonical."""
        return [*self.family_of, *self.canonical.values()]

    def raw_partitions(self, partitions: Iterable[TopicPartition]) -> set[tuple[Family, int]]:
        return {(self.family_of[tp.topic], tp.partition) for tp in partitions if tp.topic in self.family_of}


async def ensure_intake_topics(settings: IntakeSettings, others: list[TopicSpec]) -> None:
    """Create or check intake's topics: `others` and the canonical ones. With INTAKE_MAX_CANONICAL_BYTES raised above
    the default, a canonical topic intake creates gets a `max.message.bytes` that takes such records, with the
    default's room for a batch, and an existing one below it stops the start, the message naming the setting and the
    limit needed: the broker would refuse such a record in every transaction carrying it, which aborts, and the record
    comes back, run after run (settings audit). Above it, or at the broker's own default, nothing is said: the registry
    sets no limit on the canonical topics."""
    canonical = [scoped(CANONICAL[f], settings.namespace) for f in Family]
    if settings.max_canonical_bytes <= CANONICAL_RECORD_BYTES:
        await ensure_topics(settings, [*others, *canonical])
        return
    need = settings.max_canonical_bytes + BROKER_MESSAGE_BYTES - CANONICAL_RECORD_BYTES
    existing = await list_topics(settings)
    await ensure_topics(settings, [*others, *(spec if spec.name in existing else replace(
        spec, config={**spec.config, "max.message.bytes": str(need)}) for spec in canonical)])
    described = await described_configs(settings, [spec.name for spec in canonical])
    low = sorted(name for name, config in described.items() if int(config.values.get("max.message.bytes") or 0) < need)
    if low:
        raise TopicConfigError(
            f"INTAKE_MAX_CANONICAL_BYTES ({settings.max_canonical_bytes}) is above what {', '.join(low)} take: give "
            f"them max.message.bytes={need} (kafka-configs --alter), or lower the setting")


class Validation:
    """The records of one fetch, decided into their tasks' outputs."""

    def __init__(self, topics: Topics, partitions: dict[str, int], seen: SeenByPartition,
                 settings: IntakeSettings, privacy: IntakePrivacy | None = None) -> None:
        self.topics, self.partitions, self.seen, self.privacy = topics, partitions, seen, privacy
        self.max_record_bytes, self.max_canonical_bytes = settings.max_record_bytes, settings.max_canonical_bytes
        self.home: dict[tuple[str, str], int] = {}
        """(raw topic, commune) -> the raw partition the commune hashes to."""
        self.now_ms = int(time.time() * 1000)
        self.rejected_at = datetime.now(UTC).isoformat()
        self.next_yield = time.perf_counter() + YIELD_AFTER_S

    async def partition(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]],
                        out: TransactionOutputs) -> None:
        """Decide `records` (consecutive, of raw partition `tp`) into `out`, with their input offset."""
        out.offsets[tp] = records[-1].offset + 1
        out.records += len(records)
        out.bytes += sum(len(rec.value or b"") for rec in records)
        out.timestamps.extend(rec.timestamp for rec in records)
        if records[-1].timestamp_type == STAMPED_BY_BROKER:  # no erasure depends on this host's clock (ADR 0043),
            telemetry.CLOCK_AHEAD.set((self.now_ms - records[-1].timestamp) / 1000)  # but the times it shows do
        family = self.topics.family_of[tp.topic]
        canonical = self.topics.canonical[family]
        raw_count = self.partitions[tp.topic]
        seen = self.seen.of(family, tp.partition)
        privacy = self.privacy
        decide = Decider(family, tp.topic, tp.partition, seen, self.topics.policy_of[tp.topic], self.max_record_bytes,
                         self.rejected_at, privacy.keyring if privacy is not None else None).decide
        published: list[str] = []
        for rec in records:
            if time.perf_counter() >= self.next_yield:  # let the clients answer the broker meanwhile
                await asyncio.sleep(0)
                # from the end of the turn: counted from its start, a turn of 0.2 ms or more (a busy loop) would
                # make validation yield after every record
                self.next_yield = time.perf_counter() + YIELD_AFTER_S
            written_ms = written_at(rec.timestamp, rec.headers, self.now_ms, rec.timestamp_type)
            # before an erasure: sealed erased (ADR 0042); within what a datetime holds, whatever the producer set
            written = datetime.fromtimestamp(written_ms / 1000, UTC)
            decision = decide(rec.value, rec.headers, rec.offset, written)
            if isinstance(decision, Accepted):
                event = decision.event
                home = self.home.get((tp.topic, event.commune))
                if home is None:
                    home = self.home[(tp.topic, event.commune)] = partition_for(event.commune.encode(), raw_count)
                moved = home != tp.partition and not _rerouted(rec.headers)
                if moved and _dead_letter_bytes(event.commune.encode(), rec.value, rec.headers) <= REROUTE_BYTES:
                    out.reroute(tp.topic, home, event.commune, rec.value, rec.headers,
                                f"{tp.topic}/{tp.partition}/{rec.offset}", written_ms)
                    out.rerouted[family] += 1
                    continue
                if moved:  # its copy would pass the raw topic's limit: refused, it ended every run holding it
                    decision = DeadLetterContext(
                        reason=Reason.PAYLOAD_TOO_LARGE, field="(record)", message=TOO_LARGE_TO_MOVE,
                        source_topic=tp.topic, source_partition=tp.partition, source_offset=rec.offset,
                        rejected_at=self.rejected_at)
                elif home != tp.partition:  # moved once already, yet not on its commune's partition
                    decision = DeadLetterContext(
                        reason=Reason.INVALID_FIELD, field=REROUTED_FROM, message=MOVED_ELSEWHERE,
                        source_topic=tp.topic, source_partition=tp.partition, source_offset=rec.offset,
                        rejected_at=self.rejected_at)
                else:
                    encoded = wire.encode(event)
                    if fits_canonical(encoded, self.max_canonical_bytes):
                        if privacy is not None:  # the data keys it was sealed under, in the same transaction
                            for topic, key, key_value in privacy.key_messages(decision.keys):
                                out.record(topic, key, key_value)
                        out.canonical(canonical, encoded)
                        published_as = published_key(event.source, event.id)
                        seen.add(published_as, self.now_ms)
                        published.append(published_as)
                        continue
                    decision = DeadLetterContext(
                        reason=Reason.PAYLOAD_TOO_LARGE, field="value", source_topic=tp.topic,
                        message=f"the canonical event would exceed {self.max_canonical_bytes} bytes",
                        source_partition=tp.partition, source_offset=rec.offset, rejected_at=self.rejected_at)
            # what `trace` finds it by without the raw topics (ADR 0038): read here, for dead letters only; and when
            # the record was written, which a replay carries (by the broker's clock, not this host's: ADR 0043)
            decision = decision.model_copy(update={**lookup_names(family, rec.value, rec.headers),
                                                   "source_written_at": written_ms})
            self._dead_letter(out, privacy, rec, decision, written)
            out.outcomes[(family, decision.reason)] += 1
            if (rejected := REJECTIONS_LOGGED.due((family, decision.reason))) is not None:
                log.info("record.rejected", reason=decision.reason.value, field=decision.field, family=family.value,
                         topic=tp.topic, partition=tp.partition, offset=rec.offset, rejected_since_last=rejected)
        if published:
            out.outcomes[(family, None)] += len(published)
            key, value = changelog_record(family.value, tp.partition, records[0].offset, published, self.now_ms)
            out.changelog(self.topics.changelog, tp.partition, key, value)

    def _dead_letter(self, out: TransactionOutputs, privacy: IntakePrivacy | None, rec: ConsumerRecord[bytes, bytes],
                     decision: DeadLetterContext, written: datetime) -> None:
        """The record as a dead letter: whole (sealed, ADR 0015 and 0026) when that fits `DEAD_LETTER_BYTES`; else
        without the record's headers; else without the record (its reason, its place and its size say what it was)."""
        headers: list[tuple[str, bytes]] = list(rec.headers)
        value = rec.value
        for dropped in (None, "its headers", "the record"):
            if dropped == "its headers":
                headers = []
            elif dropped == "the record":
                value = None
            context = decision if dropped is None else _noted(decision, (
                f"{decision.message}; {dropped} left out of this dead letter: a {len(rec.value or b'')}-byte value "
                f"and {len(rec.headers)} headers would pass the dead-letter topic's limit"))
            if privacy is None:
                letter: tuple[bytes | None, bytes | None, list[tuple[str, bytes]]] = (value, rec.key, headers)
                keys: list[tuple[str, bytes, bytes]] = []
            else:  # the original record sealed whole (the applicant's key, or the day's)
                sealed, keys = privacy.seal_dead_letter(rec.key, value, headers, context, written)
                letter = (sealed.value, sealed.key, list(sealed.headers))
            if dropped == "the record" or _dead_letter_bytes(letter[1], letter[0],
                                                             [*letter[2], *context.headers()]) <= DEAD_LETTER_BYTES:
                break
        for topic, key, key_value in keys:
            out.record(topic, key, key_value)
        out.dead_letter(self.topics.dlq, letter[0], letter[1], letter[2], context)


def _noted(decision: DeadLetterContext, message: str) -> DeadLetterContext:
    """`decision` with `message`, its first problem's too (`dlq.problems` begins with `dlq.message`'s)."""
    first = decision.problems[:1] and (decision.problems[0].model_copy(update={"message": message}),)
    return decision.model_copy(update={"message": message, "problems": (*first, *decision.problems[1:])})


def _rerouted(headers: Sequence[tuple[str, bytes]]) -> bool:
    """Already moved once (never moved twice: two workers disagreeing on a partition count would pass it back and
    forth for ever)."""
    return any(name == REROUTED_FROM for name, _ in headers)


REROUTE_BYTES = MAX_RECORD_BYTES - 1024
"""What a raw record moved to its commune's partition may take with intake's two headers (`TransactionOutputs.reroute`)
under the raw topics' limit, its batch's own bytes left out. A record its producer compressed can pass it (the broker
limits the compressed batch): 12 MB of headers gzipped to 12 kB was accepted on the raw topic, its copy refused by the
producer, and the transaction holding it aborted, run after run, every partition of the worker stopped (audit)."""
TOO_LARGE_TO_MOVE = (f"not on its commune's partition, and its copy there, with intake's headers, would pass the raw "
                     f"topics' {MAX_RECORD_BYTES} bytes (a producer's compression let it in): key records by commune")

MOVED_ELSEWHERE = (
    f"{REROUTED_FROM} is intake's own header, on records it moved to their commune's partition; this one is on "
    "another partition (a header a producer set, or a partition count changed since): not published here, where "
    "its copies on the commune's partition are not seen")
"""The message of a dead letter (`invalid_field`) for a record with the re-routing header away from its commune's
partition: published there, a copy of an event its source also sent keyed by commune would be published twice
(de-duplication is per partition: review)."""
