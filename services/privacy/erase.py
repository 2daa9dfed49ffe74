"""Erasure (crypto-shredding): tombstone every data key of a subject, mark the subject erased and leave an audit
record, in one transaction.

Needs no key-encryption key: the subject id comes from the CCCD and the pepper, the
keys to destroy are the live record keys `<subject>/*` of the key topic. A worker that
made a key writes its record with every transaction that uses it until its key store
reads it back, so a copy may follow the tombstone (written before the worker read it);
on the compacted topic a key's last record is what every later reader keeps. So the
erasure also writes the subject's mark (`ErasureMark`, `<subject>/~erased`: keys created
up to the erasure by the broker's clock, plus a margin; `erasure_time`), which every keyring
honours whichever it reads first and which compaction keeps; and it reads the topic again
afterwards and tombstones such late copies, so the wrapped keys leave the log too. The audit record
holds the pseudonymous subject id, never the CCCD. In the same transaction, a notice on
commune.privacy.erasures tells subscribers, and through notify the webhook subscribers that
receive applicants' data, to delete what they keep of the subject (ADR 0035).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import TopicAuthorizationFailedError
from pydantic import ValidationError

from schemas.personal import ERASED_MARK, ErasureAudit, ErasureMark, ErasureNotice, KeyRecord, record_key
from schemas.topics import (
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    PRIVACY_AUDIT,
    PRIVACY_ERASURES,
    TopicSpec,
    TransactionalId,
    scoped,
    transactional_id,
)
from services.common import clients, transactions
from services.common.admin import partition_counts, topic_errors
from services.common.changelog import read_to_end
from services.common.closing import Abandoned, answered_within, start_within, stop_writer
from services.common.settings import KafkaConnection
from services.privacy import crypto, required_topics
from services.privacy.erasure_time import erasure_mark
from services.privacy.store import key_topics

CLOCK_MARGIN = timedelta(minutes=1)
"""The mark covers what was written up to this long after the erasure by the broker's clock (`erasure_mark`): for the
brokers' clocks among themselves (a raw partition's leader stamps its records, the audit topic's leader the erasure),
and for keys dated by a worker's own clock (written before ADR 0043). A worker that has read the mark dates the
subject's new keys after it."""
TIDY_PASSES = 3
PASS_INTERVAL_S = 1.0
"""Between the erasure's transaction and each read for late copies: the key stores follow the topic in far less."""


async def live_keys(conn: KafkaConnection, namespace: str, subject: str,
                    created_up_to: datetime | None = None) -> set[str]:
    """Key ids of `subject` whose latest record in the applicants' key topic is not a tombstone (with
    `created_up_to`, only those created up to then; a record that does not parse counts as live)."""
    return (await live_keys_by_topic(conn, namespace, subject, created_up_to))[scoped(KEYS_APPLICANTS, namespace).name]


async def live_keys_by_topic(conn: KafkaConnection, namespace: str, subject: str,
                             created_up_to: datetime | None = None,
                             tombstoned: Mapping[str, Collection[str]] | None = None) -> dict[str, set[str]]:
    """`live_keys` on both key topics, by topic: the applicants' keys and those of their dead letters, which expire
    with them (`commune.keys.deadletters`). Both are the subject's keys: an erasure counts and tombstones both (an
    erasure of an applicant known only from a dead letter counted 0 keys destroyed). `tombstoned` (by topic): key ids
    live whenever they were dated, copies of keys an erasure tombstoned (ids are random, never made twice)."""
    live: dict[str, set[str]] = {}
    for spec in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS):
        topic = scoped(spec, namespace).name
        live[topic] = await _live_in(conn, topic, spec.partitions, subject, created_up_to,
                                     (tombstoned or {}).get(topic, ()))
    return live


async def _live_in(conn: KafkaConnection, topic: str, partitions: int, subject: str,
                   created_up_to: datetime | None, tombstoned: Collection[str] = ()) -> set[str]:
    prefix = f"{subject}/".encode()
    live: set[str] = set()

    def apply(_: int, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None or not record.key.startswith(prefix):
            return
        key_id = record.key[len(prefix):].decode("utf-8", "replace")
        if key_id == ERASED_MARK:
            return
        if record.value is None or (created_up_to is not None and key_id not in tombstoned
                                    and _created_after(record.value, created_up_to)):
            live.discard(key_id)
        else:
            live.add(key_id)

    await read_to_end(conn, topic, range(partitions), apply, client_id="commune-bus-erase-read",
                      settle_s=None)  # every key committed, also past a dead writer's open transaction (ADR 0037)
    return live


def _created_after(value: bytes, when: datetime) -> bool:
    try:
        return KeyRecord.model_validate_json(value).created_at > when
    except ValueError:
        return False


def audit_record(subject: str, requested_by: str, via: str, now: datetime | None = None) -> ErasureAudit:
    """The erasure's audit record, keys not yet counted: built before any key is destroyed, so none ever goes
    without its record (ADR 0015). Raises ValueError naming the fields that do not fit, never their values."""
    try:
        return ErasureAudit(erasure_id=uuid.uuid4().hex, subject=subject, requested_by=requested_by,
                            requested_at=now or datetime.now(UTC), keys_destroyed=0, via=via)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ValueError(f"the audit record would be invalid ({', '.join(fields)}): nothing was erased") from None


def notice_of(audit: ErasureAudit) -> ErasureNotice:
    """What subscribers are told of an erasure: the subject and when, not who asked nor how many keys."""
    return ErasureNotice(erasure_id=audit.erasure_id, subject=audit.subject, erased_at=audit.requested_at)


def erasure_transactional_id(namespace: str, via: str, erasure_id: str) -> str:
    """Each erasure's own transactional id, under the one erasure prefix (whose ACL both doors hold): erasures at
    the same time (two requests to a gateway, two gateways, the CLI beside them) never fence each other, as one id
    for all did (the second's start ended the first's transaction). Nothing needs fencing: an erasure's transaction
    that its process left open is aborted by the broker at the transaction timeout, and running it again is safe."""
    return transactional_id(TransactionalId.ERASE, namespace, f"{via}.{erasure_id}")


def erasure_topics(namespace: str) -> list[TopicSpec]:
    """The topics an erasure reads or writes: they must exist (`required_topics`), it never creates them."""
    return [scoped(t, namespace) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)]


async def forbidden(conn: KafkaConnection, namespace: str) -> list[str]:
    """The topics of an erasure this principal may not describe: it may not erase. To it they look missing, so an
    erasure tried to create them and said the broker refused to create them, although they were there (CLI trial:
    `erase` as a subscriber)."""
    codes = await topic_errors(conn, [t.name for t in erasure_topics(namespace)])
    return [name for name, code in codes.items() if code == TopicAuthorizationFailedError.errno]


async def keys_written(conn: KafkaConnection, namespace: str) -> bool:
    """Whether the namespace's key topics exist: without them no key was ever written there (`dlq` reads none)."""
    topics = key_topics(namespace)
    return len(await partition_counts(conn, list(topics))) == len(topics)


Committed = Callable[[ErasureAudit], None]
"""Told each erasure as soon as its transaction commits, before the clean-up that follows: a failure after it (a broker
gone during the clean-up) must not hide an erasure that was done (operator audit: only the Kafka error was printed, and
a run again said 0 keys destroyed)."""


async def erase_subject(conn: KafkaConnection, namespace: str, subject: str, *, requested_by: str,
                        via: str = "cli", now: datetime | None = None,
                        committed: Committed | None = None) -> ErasureAudit:
    """Destroy every key of `subject`; returns the audit record written (keys_destroyed may be 0). `TopicsMissing`
    (nothing done) when the namespace lacks one of `erasure_topics`."""
    audit = await _erase(conn, namespace, subject, requested_by=requested_by, via=via, now=now, committed=committed)
    assert audit is not None
    return audit


async def _erase(conn: KafkaConnection, namespace: str, subject: str, *, requested_by: str, via: str,
                 now: datetime | None = None, only_if_live: bool = False,
                 committed: Committed | None = None) -> ErasureAudit | None:
    """`erase_subject`; with `only_if_live`, nothing at all (None) for a subject without a live key."""
    audit = audit_record(subject, requested_by, via, now)
    keys_topic, audit_topic = scoped(KEYS_APPLICANTS, namespace).name, scoped(PRIVACY_AUDIT, namespace).name
    notices_topic = scoped(PRIVACY_ERASURES, namespace).name
    await required_topics.require(conn, [t.name for t in erasure_topics(namespace)])
    producer = clients.transactional_producer(
        conn, transactional_id=erasure_transactional_id(namespace, via, audit.erasure_id),
        client_id="commune-bus-erase")
    await start_within("privacy", "erasure writer", producer)  # StartUnanswered: a broker giving it no producer id
    abandoned: Abandoned = set()  # a transaction given up (Unanswered: a broker gone silent)
    try:
        live = await live_keys_by_topic(conn, namespace, subject)
        if only_if_live and not any(live.values()):
            return None
        audit = audit.model_copy(update={"keys_destroyed": sum(len(ids) for ids in live.values())})

        asked: list[bool] = []

        async def write() -> ErasureMark:  # each send checked: aiokafka would commit without it
            async with transactions.transaction(producer):
                # the audit record first: the broker's answer dates the mark by the broker's clock (`erasure_mark`)
                logged = await producer.send(audit_topic, audit.model_dump_json().encode(), key=subject.encode())
                await transactions.all_sent([logged])
                mark = erasure_mark(audit, logged.result(), CLOCK_MARGIN)
                sent = [await producer.send(topic, None, key=record_key(subject, key_id))
                        for topic, ids in live.items() for key_id in sorted(ids)]
                sent.append(await producer.send(keys_topic, mark.model_dump_json().encode(),
                                                key=record_key(subject, ERASED_MARK)))
                # for those who hold the subject's data (subscribers; notify tells webhook subscribers, ADR 0035)
                sent.append(await producer.send(notices_topic, notice_of(audit).model_dump_json().encode(),
                                                key=subject.encode()))
                await transactions.all_sent(sent)
                asked.append(True)  # the commit, next
            return mark
        mark = await answered_within(write(), "the erasure's transaction", asked_to_commit=lambda: bool(asked),
                                     abandoned=abandoned)
        if committed is not None:
            committed(audit)

        async def late_copies() -> dict[str, set[bytes]]:  # a copy of a key tombstoned here, however it is dated
            late = await live_keys_by_topic(conn, namespace, subject, mark.created_up_to, live)
            return {topic: {record_key(subject, key_id) for key_id in ids} for topic, ids in late.items()}

        await tombstone_late_copies(producer, late_copies, abandoned)  # refused by every keyring, gone from the log too
    finally:
        await stop_writer("privacy", "erasure writer", producer, abandoned)
    return audit


LateCopies = Callable[[], Awaitable[dict[str, set[bytes]]]]
"""Reads the key topics again and returns, per topic, the record keys whose last record is a live copy of an erased
key (written after its tombstone or under its subject's mark)."""


async def tombstone_late_copies(producer: AIOKafkaProducer, late_copies: LateCopies,
                                abandoned: Abandoned) -> int:
    """Up to `TIDY_PASSES` times, `PASS_INTERVAL_S` apart: tombstone what `late_copies` finds, in one transaction of
    `producer` (transactional, started; `Unanswered` after `closing.UNANSWERED_S`, given up into `abandoned`), until
    it finds nothing; returns how many tombstones were written. The erasure tidies after its writers' late copies; a
    re-wrap (`privacy.rewrap`) after an erasure it raced."""
    written = 0
    for _ in range(TIDY_PASSES):
        await asyncio.sleep(PASS_INTERVAL_S)
        found = sorted((topic, key) for topic, keys in (await late_copies()).items() for key in keys)
        if not found:
            break
        async def tombstones(keys: list[tuple[str, bytes]]) -> None:  # each send checked: aiokafka commits regardless
            async with transactions.transaction(producer):
                await transactions.all_sent([await producer.send(topic, None, key=key) for topic, key in keys])
        await answered_within(tombstones(found), "the tombstones of late copies", abandoned=abandoned)
        written += len(found)
    return written


async def erase_cccd(conn: KafkaConnection, namespace: str, pepper: bytes, cccd: str, *, requested_by: str,
                     via: str = "cli") -> ErasureAudit:
    """Erase the applicant with this CCCD number (the operator CLI and the gateway's endpoint call this)."""
    return await erase_subject(conn, namespace, crypto.cccd_subject(pepper, cccd), requested_by=requested_by, via=via)


async def erase_applicant(conn: KafkaConnection, namespace: str, pepper: bytes,
                          identifiers: Sequence[tuple[str, str]], *, requested_by: str, via: str = "cli",
                          committed: Callable[[str, ErasureAudit], None] | None = None,
                          ) -> list[tuple[str, ErasureAudit]]:
    """Erase an applicant by every identifier they are known by (`cccd`, `phone`, `email`, `zalo`, or a `subject`
    as `trace` shows it: an applicant sealed without any of those has one of its own): one subject
    each, each with its audit record, in the order given (the same subject once); returns (kind, audit) pairs.

    Intake seals an applicant under the CCCD when the dossier carries one, else under the phone, the e-mail or
    the Zalo id (`privacy.applicant.subject_of`): a citizen whose dossiers came some with a CCCD and some without
    has copies under several subjects, and an erasure by the CCCD alone leaves the others readable. The citizen
    (or the operator) names every identifier they used; a failure raises after the subjects before it are erased
    (each erasure is complete or not done: running it again is safe), each told to `committed` (kind, audit) as soon
    as it commits. Every audit record is checked first: a requester it cannot hold is a ValueError before any key is
    destroyed.
    """
    unusable = [kind for kind, value in identifiers if not crypto.identifies(kind, value)]
    if unusable:  # a placeholder would name everyone sealed under it, or no one
        raise ValueError(f"not an identifier of one person: {', '.join(unusable)}")
    if any(kind == "subject" for kind, _ in identifiers):  # a placeholder's subject, named as such (as trace shows
        shared = crypto.placeholder_subjects(pepper)  # it): every stranger sealed under it would be shredded
        if any(kind == "subject" and value in shared for kind, value in identifiers):
            raise ValueError("not an identifier of one person: subject (a placeholder's, shared by every applicant "
                             "whose dossier carried it before 2026-12-02; ask the operators of the key store)")
    for kind, value in identifiers:  # every audit record checked before the first subject's keys go
        audit_record(crypto.identifier_subject(pepper, kind, value), requested_by, via)
    audits: list[tuple[str, ErasureAudit]] = []
    seen: set[str] = set()
    for kind, value in identifiers:
        def told(audit: ErasureAudit, kind: str = kind) -> None:
            if committed is not None:
                committed(kind, audit)

        subject = crypto.identifier_subject(pepper, kind, value)
        if subject not in seen:
            seen.add(subject)
            audits.append((kind, await erase_subject(conn, namespace, subject, requested_by=requested_by, via=via,
                                                     committed=told)))
        # a phone's copies sealed before its spellings were made one (2026-12-02) are under the subjects of those
        # spellings: erased too where they hold keys (no worker makes keys under them any more)
        for legacy in crypto.legacy_phone_subjects(pepper, value) if kind == "phone" else ():
            if legacy not in seen:
                seen.add(legacy)
                done = await _erase(conn, namespace, legacy, requested_by=requested_by, via=via, only_if_live=True,
                                    committed=told)
                if done is not None:
                    audits.append((kind, done))
    return audits
