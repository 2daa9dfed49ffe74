"""The one registry of Kafka topics and consumer groups.

No service spells a topic name inline: they import these constants. Topic
creation (`make topics`, test fixtures), JSON Schema and AsyncAPI export read
from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from schemas.events import FAMILIES, Family, FamilySpec

PARTITIONS = 6
"""Partition count of every topic. Faust apps must use the same (`topic_partitions`)."""

COMMUNE_KEY = "commune code, 5 digits (e.g. \"02269\"): one commune's events share a partition, in order"
MAX_RECORD_BYTES = 10 * 1024 * 1024
"""Raw and dead-letter topics accept records this large so oversized input reaches the DLQ intact."""
DEAD_LETTER_HEADROOM = 32 * 1024
"""What intake's dead-letter topic accepts beyond `MAX_RECORD_BYTES`: a dead letter is the raw record sealed whole
(nonce, tag, its key and headers packed in) plus intake's `dlq.*` headers, about 400 bytes more than the record. With
the same limit as the raw topic, a raw record within those bytes of it was accepted there, its dead letter refused,
and the transaction holding it aborted run after run: the worker stopped for good (runtime audit finding 2). Within
the producers' `max_request_size` (`MAX_RECORD_BYTES` + 64 KiB). A record that would pass it all the same (thousands
of headers, a value compressed by its producer) is dead-lettered without them (`intake.validate.DEAD_LETTER_BYTES`)."""


class Kind(StrEnum):
    RAW = "raw"
    CANONICAL = "canonical"
    DEAD_LETTER = "dead-letter"
    STATUS = "status"
    SNAPSHOT = "snapshot"
    ERASURE = "erasure"
    INTERNAL = "internal"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kind: Kind
    key: str
    description: str
    family: Family | None = None
    partitions: int = PARTITIONS
    config: Mapping[str, str] = field(default_factory=dict)


_BIG = {"max.message.bytes": str(MAX_RECORD_BYTES)}


def _raw(family: Family, spec: FamilySpec) -> TopicSpec:
    shapes = f" or {spec.other_raw_shapes}" if spec.other_raw_shapes else ""
    return TopicSpec(
        f"commune.raw.{family.value}", Kind.RAW,
        key="commune code recommended (required for exact de-duplication); any key accepted",
        description=f"Inbound {spec.inbound} from commune systems, as they send them (canonical CloudEvents JSON"
        f"{shapes})",
        family=family, config={**_BIG, "retention.ms": str(RAW_RETENTION_DAYS * 24 * 3600 * 1000),
                               "segment.ms": str(RAW_SEGMENT_HOURS * 3600 * 1000),
                               "message.timestamp.type": RAW_TIMESTAMPS},
    )


RAW_RETENTION_DAYS = 3
"""Raw topics hold personal data in clear (only intake may read them): kept long enough for intake to catch up
after an outage, no longer (ADR 0015). Everything after them is canonical (sealed) or a sealed dead letter."""
RAW_SEGMENT_HOURS = 6
"""Kafka deletes whole segments only, once closed: with its default `segment.ms` (7 days) a quiet raw partition kept
its records in clear for up to 10 days. A segment rolled every 6 hours bounds them to the retention + 6 h."""
RAW_TIMESTAMPS = "LogAppendTime"
"""A raw record's timestamp is when the broker appended it, not what its producer said: retention and segment rolls
go by the largest timestamp in a segment, and sources set theirs from their own PCs' clocks. One record dated 2076
kept its whole partition's records, in clear, for ever; one dated 1970 was deleted minutes after it was written,
before intake read it (time audit, on the broker). Event times travel in the records' values, untouched."""
STAMPED_BY_BROKER = 1
"""A record's `timestamp_type` (Kafka's attribute, aiokafka's records and send results) on a LogAppendTime topic."""
CHANGELOG_SEGMENT_HOURS = 6
"""The same for the time-retained changelogs (intake's de-duplication ids, the gateway's claims): with 7-day segments
a restore read up to the retention + 7 days of records, twice the 7 days of ids ADR 0005 keeps; now + 6 h."""
DEAD_LETTER_SEGMENT_HOURS = 24
"""Intake's dead letters (30 days) leave within a day of their retention, before the day keys that open them
(`KEYS_DEAD_LETTERS`, 32 days): with 7-day segments a dead letter outlived its key by up to 5 days, unreadable."""


PUBLISHED_RETENTION_DAYS = 30
"""How long the topics downstream applications read keep their records (the canonical events, the notifications'
statuses): a subscriber stopped for up to this long catches up from its committed offsets; older history is not
replayable from Kafka. Set here, not left to the cluster's `log.retention.*` (downstream audit: it was the broker's
default, 7 days, stated nowhere)."""
PUBLISHED_RETENTION = {"retention.ms": str(PUBLISHED_RETENTION_DAYS * 24 * 3600 * 1000),
                       "segment.ms": str(24 * 3600 * 1000)}
"""Daily segments: a record is deleted with its segment, so it stays readable up to a segment's span past the
retention; notify's ledger must remember its ids that long (`services.notify.ledger_upkeep.keep_window_ms`)."""


def _canonical(family: Family, spec: FamilySpec) -> TopicSpec:
    return TopicSpec(
        f"commune.events.{family.value}", Kind.CANONICAL, key=COMMUNE_KEY,
        description=f"Validated canonical {spec.canonical}, CloudEvents 1.0 binary mode (ce_* headers, JSON data)",
        family=family, config=PUBLISHED_RETENTION,
    )


RAW: dict[Family, TopicSpec] = {family: _raw(family, spec) for family, spec in FAMILIES.items()}
"""Each family's inbound topic, derived from `schemas.events.FAMILIES`."""
CANONICAL: dict[Family, TopicSpec] = {family: _canonical(family, spec) for family, spec in FAMILIES.items()}
"""Each family's validated topic, derived from `schemas.events.FAMILIES`."""
FAMILY_OF_RAW_TOPIC: dict[str, Family] = {t.name: f for f, t in RAW.items()}
# convenience aliases for code that names one family's topic (derived, never spelled twice)
RAW_DOSSIER, EVENTS_DOSSIER = RAW[Family.DOSSIER], CANONICAL[Family.DOSSIER]
RAW_MOBILE_TEAM, EVENTS_MOBILE_TEAM = RAW[Family.MOBILE_TEAM], CANONICAL[Family.MOBILE_TEAM]
RAW_ANNOUNCEMENT, EVENTS_ANNOUNCEMENT = RAW[Family.ANNOUNCEMENT], CANONICAL[Family.ANNOUNCEMENT]

DLQ_INTAKE = TopicSpec(
    "commune.dlq.intake", Kind.DEAD_LETTER, key="the commune code the record names (5 digits), else none",
    description="Records intake rejected, sealed whole (original key, headers and value; ADR 0026), plus dlq.* "
    "headers with the reason",
    config={"max.message.bytes": str(MAX_RECORD_BYTES + DEAD_LETTER_HEADROOM),
            "retention.ms": str(30 * 24 * 3600 * 1000), "segment.ms": str(DEAD_LETTER_SEGMENT_HOURS * 3600 * 1000)},
)
INTAKE_DEDUP = TopicSpec(
    "commune.intake.dedup", Kind.INTERNAL, key="family:raw partition:first offset of the transaction",
    description="Intake's de-duplication changelog: the event ids each transaction published, by raw partition",
    # one record holds a whole transaction's ids of a raw partition: 2,000 ids of 128 four-byte characters, with their
    # sources, pass a broker's default 1 MB limit, and a refused record would fail the transaction again and again
    config={**_BIG, "cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000),
            "segment.ms": str(CHANGELOG_SEGMENT_HOURS * 3600 * 1000)},
)
NOTIFY_STATUS = TopicSpec(
    "commune.notify.status", Kind.STATUS, key=COMMUNE_KEY,
    description="Outcome of every notification attempt (sent, delivered, failed, deferred, dead-lettered)",
    config=PUBLISHED_RETENTION,
)
DLQ_NOTIFY = TopicSpec(
    "commune.dlq.notify", Kind.DEAD_LETTER, key=COMMUNE_KEY,
    description="Notifications given up after the last retry, with the reason",
)
BROKER_MESSAGE_BYTES = 1_048_588
"""The broker's default `max.message.bytes`, the canonical topics' limit unless intake's is raised"""
CANONICAL_RECORD_BYTES = 1_000_000
"""The largest canonical record intake publishes unless told otherwise (`INTAKE_MAX_CANONICAL_BYTES`: key, value and
headers), under the canonical topics' limit (they set none: the broker's default, 1,048,588)."""
NOTIFY_LEDGER_BYTES = 2 * CANONICAL_RECORD_BYTES + 64 * 1024
"""commune.notify.ledger's `max.message.bytes`, the largest deferral notify derives from such a record: a webhook's
body is its event as structured JSON (no larger than the canonical record: the same data, the `ce_*` headers as
attributes), escaped once more as a string inside the entry (at most twice as long: each `"` and `\\` doubled; the
body holds no control character unescaped), beside the request's ids, recipient and parameters (a few kB). Left to
the broker's default, a parked webhook of a ~960 kB event (a ~1.9 MB entry) was refused and the run ended, again
after every restart. A deferral over it (intake's limit raised) is dead-lettered, never sent to be refused
(`services.notify.ledger_entry.EntryTooLarge`); a ledger topic below it refuses notify's start (ADR 0028)."""
NOTIFY_LEDGER = TopicSpec(
    "commune.notify.ledger", Kind.INTERNAL, key="notification id",
    description="Notify's delivery ledger: done (sent/dead-lettered) or deferred (with the request) per "
    "notification id",
    config={"cleanup.policy": "compact,delete", "retention.ms": str(60 * 24 * 3600 * 1000),
            "max.message.bytes": str(NOTIFY_LEDGER_BYTES)},
)
NOTIFY_DEADLINES = TopicSpec(
    "commune.notify.deadlines", Kind.INTERNAL, key=COMMUNE_KEY,
    description="Deadline tracker input: open-dossier states (no personal data) and alert decisions",
)
NOTIFY_ALERTS = TopicSpec(
    "commune.notify.alerts", Kind.INTERNAL, key=COMMUNE_KEY,
    description="Time-driven dossier alerts (due within one working day, overdue) fired by the deadline tracker",
)
NOTIFY_REPLAYS = TopicSpec(
    "commune.notify.replays", Kind.INTERNAL, key=COMMUNE_KEY,
    description="Dead-lettered notifications sent again (`commune-bus notify-dlq replay`): each request under its "
    "new id, written with its replay-log entry in one transaction, read by notify as an input (ADR 0033)",
)
DLQ_REPLAYED = TopicSpec(
    "commune.dlq.replayed", Kind.INTERNAL,
    key="<dlq topic>:<partition>:<offset>:<digest of its bytes> of a re-driven dead letter (schemas/replay.py)",
    description="Replay log of `commune-bus dlq replay`, written in the same transaction as the re-driven record, "
    "so a dead letter is never replayed twice",
    partitions=1, config={"cleanup.policy": "compact"},
)
METRICS_CHANGELOG = TopicSpec(
    "commune.metrics.changelog", Kind.INTERNAL, key="kind|commune|entity id",
    description="Metrics state changelog: latest state per dossier/visit/announcement, by canonical partition",
    config={"cleanup.policy": "compact"},
)
METRICS_SNAPSHOTS = TopicSpec(
    "commune.metrics.snapshots", Kind.SNAPSHOT, key=COMMUNE_KEY,
    description="Periodic per-commune indicator snapshots for systems that do not scrape Prometheus; compacted by "
    "commune (the newest of each is kept for 7 days)",
    # a snapshot of every commune every minute is ~4.8 M records a day: compacted, the topic is each commune's latest
    # (a table a new reader loads from the start), hourly segments so the cleaner reaches them
    config={"cleanup.policy": "compact,delete", "retention.ms": str(7 * 24 * 3600 * 1000),
            "segment.ms": str(3600 * 1000)},
)

KEYS_APPLICANTS = TopicSpec(
    "commune.keys.applicants", Kind.INTERNAL, key="<subject id>/<key id>",
    description="Applicants' data keys, wrapped under the key-encryption key; a tombstone erases one (ADR 0015)",
    # an erased key's old record must leave the log soon, not when a 7-day segment rolls: small segments and a
    # compaction deadline bound how long the wrapped key stays on disk after its tombstone (ADR 0015)
    config={"cleanup.policy": "compact", "segment.ms": str(3600 * 1000), "min.cleanable.dirty.ratio": "0.01",
            "max.compaction.lag.ms": str(24 * 3600 * 1000)},
)
KEYS_DEAD_LETTERS = TopicSpec(
    "commune.keys.deadletters", Kind.INTERNAL, key="dlq:<day>/<key id>",
    description="Day keys of dead letters whose applicant is unknown; deleted after the dead-letter retention",
    config={"cleanup.policy": "delete", "retention.ms": str(32 * 24 * 3600 * 1000),
            "segment.ms": str(24 * 3600 * 1000)},
)
PRIVACY_AUDIT = TopicSpec(
    "commune.privacy.audit", Kind.INTERNAL, key="subject id",
    description="One record per erasure: who asked, when, the subject id and how many keys; no personal data",
    # stamped by the broker: the erasure's mark is dated by its audit record's append time, the clock raw records'
    # times come from, not by the eraser's host (`privacy.erasure_time`, ADR 0043)
    partitions=1, config={"retention.ms": "-1", "message.timestamp.type": "LogAppendTime"},
)
PRIVACY_ERASURES = TopicSpec(
    "commune.privacy.erasures", Kind.ERASURE, key="subject id",
    description="One notice per erasure, for subscribers and notify (which tells the webhook subscribers that receive "
    "applicants' data): the pseudonymous subject erased and when; no personal data, nor who asked (ADR 0035)",
    partitions=1, config=PUBLISHED_RETENTION,
)
GATEWAY_CLAIMS = TopicSpec(
    "commune.gateway.claims", Kind.INTERNAL,
    key="idem:<source id>:<Idempotency-Key>, or nonce:<source id>:<signature>",
    description="The gateway's Idempotency-Keys and signature nonces, shared by every instance: claims, and each "
    "request's answer written in the transaction of its events (ADR 0013)",
    config={"cleanup.policy": "compact,delete", "retention.ms": str(48 * 3600 * 1000),
            "min.compaction.lag.ms": str(3600 * 1000), "segment.ms": str(CHANGELOG_SEGMENT_HOURS * 3600 * 1000)},
)

TOPICS: tuple[TopicSpec, ...] = (
    *RAW.values(), *CANONICAL.values(),
    DLQ_INTAKE, INTAKE_DEDUP, NOTIFY_STATUS, DLQ_NOTIFY, NOTIFY_LEDGER, NOTIFY_DEADLINES, NOTIFY_ALERTS,
    NOTIFY_REPLAYS, DLQ_REPLAYED, METRICS_CHANGELOG, METRICS_SNAPSHOTS, KEYS_APPLICANTS, KEYS_DEAD_LETTERS,
    PRIVACY_AUDIT, PRIVACY_ERASURES, GATEWAY_CLAIMS,
)


class Group(StrEnum):
    """Consumer groups (and faust app ids), one per service job."""

    INTAKE = "commune-bus.intake"
    NOTIFY = "commune-bus.notify"
    NOTIFY_DEADLINES = "commune-bus.notify.deadlines"
    METRICS = "commune-bus.metrics"


NOTIFY_ERASURE_GROUPS = "commune-bus.notify.erasures."
"""The prefix of notify's consumer groups of erasure notices: one per webhook subscriber that receives applicants'
data, `<prefix><subscriber name>` (ADR 0035)."""


class TransactionalId(StrEnum):
    """Prefixes of transactional ids; each writer appends its stable instance id (`transactional_id`)."""

    INTAKE = "commune-bus.intake"
    GATEWAY = "commune-bus.gateway"
    DLQ_REPLAY = "commune-bus.cli.dlq-replay"
    ERASE = "commune-bus.cli.erase"
    KEYS_REWRAP = "commune-bus.cli.keys-rewrap"
    METRICS = "commune-bus.metrics"


def namespaced(name: str, namespace: str) -> str:
    """The one namespace rule: `<namespace>.<name>`, or the name itself in production (namespace "")."""
    return f"{namespace}.{name}" if namespace else name


def group_id(group: Group, namespace: str) -> str:
    return namespaced(group.value, namespace)


def transactional_id(prefix: TransactionalId, namespace: str, instance: str) -> str:
    """A stable id per writer instance: a restarted instance fences its predecessor's open transaction."""
    return namespaced(f"{prefix.value}.{instance}", namespace)


def scoped(spec: TopicSpec, namespace: str) -> TopicSpec:
    """The same topic under a namespace prefix (tests give each run its own); "" is the real name."""
    return spec if not namespace else replace(spec, name=namespaced(spec.name, namespace))


def by_name(name: str) -> TopicSpec:
    for topic in TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(name)
