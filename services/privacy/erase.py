"""Erasure (crypto-shredding): tombstone every data key of a subject and leave an audit record, in one transaction.

Needs no key-encryption key: the subject id comes from the CCCD and the pepper, the
keys to destroy are the live record keys `<subject>/*` of the key topic. The topic is
read again after the tombstones, until a read finds nothing of the subject live: a key
an intake worker created for the subject while the first read ran, and a key whose record
a worker wrote again (a key is written with every transaction that uses it until the
worker reads it back) after the tombstone, are destroyed by the next pass. On a compacted
topic the last record of a key is what every future reader sees, so the erasure ends only
when that is a tombstone for each key (every keyring also holds a tombstone as final).
The audit record holds the pseudonymous subject id, never the CCCD.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from schemas.personal import ErasureAudit
from schemas.topics import KEYS_APPLICANTS, PRIVACY_AUDIT, TransactionalId, scoped, transactional_id
from services.common import clients, transactions
from services.common.admin import ensure_topics
from services.common.changelog import read_to_end
from services.common.settings import KafkaConnection
from services.privacy import crypto
from services.privacy.crypto import PrivacyError

MAX_PASSES = 5
PASS_INTERVAL_S = 1.0
"""Between a pass's tombstones and the next read: the key stores follow the topic within a fraction of this."""


class ErasureUnsettled(PrivacyError):
    """Keys of the subject were still being written after every pass: the erasure is not complete (no audit)."""


async def live_keys(conn: KafkaConnection, namespace: str, subject: str) -> set[str]:
    """Key ids of `subject` whose latest record in the key topic is not a tombstone."""
    topic = scoped(KEYS_APPLICANTS, namespace).name
    prefix = f"{subject}/".encode()
    live: set[str] = set()

    def apply(_: int, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None or not record.key.startswith(prefix):
            return
        key_id = record.key[len(prefix):].decode("utf-8", "replace")
        if record.value is None:
            live.discard(key_id)
        else:
            live.add(key_id)

    await read_to_end(conn, topic, range(KEYS_APPLICANTS.partitions), apply, client_id="commune-bus-erase-read")
    return live


def audit_record(subject: str, requested_by: str, via: str, now: datetime | None = None) -> ErasureAudit:
    """The erasure's audit record, keys not yet counted: built before any key is destroyed, so none ever goes
    without its record (ADR 0015). Raises ValueError naming the fields that do not fit, never their values."""
    try:
        return ErasureAudit(erasure_id=uuid.uuid4().hex, subject=subject, requested_by=requested_by,
                            requested_at=now or datetime.now(UTC), keys_destroyed=0, via=via)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ValueError(f"the audit record would be invalid ({', '.join(fields)}): nothing was erased") from None


async def erase_subject(conn: KafkaConnection, namespace: str, subject: str, *, requested_by: str,
                        via: str = "cli", now: datetime | None = None) -> ErasureAudit:
    """Destroy every key of `subject`; returns the audit record written (keys_destroyed may be 0)."""
    audit = audit_record(subject, requested_by, via, now)
    keys_topic, audit_topic = scoped(KEYS_APPLICANTS, namespace).name, scoped(PRIVACY_AUDIT, namespace).name
    await ensure_topics(conn, [scoped(KEYS_APPLICANTS, namespace), scoped(PRIVACY_AUDIT, namespace)])
    producer = clients.transactional_producer(
        conn, transactional_id=transactional_id(TransactionalId.ERASE, namespace, "cli"),
        client_id="commune-bus-erase")
    await producer.start()
    try:
        destroyed: set[str] = set()
        live = await live_keys(conn, namespace, subject)
        for _ in range(MAX_PASSES):
            if not live:
                break
            destroyed |= live
            async with transactions.transaction(producer):  # each send checked: aiokafka would commit without it
                await transactions.all_sent([await producer.send(keys_topic, None, key=f"{subject}/{key_id}".encode())
                                             for key_id in sorted(live)])
            await asyncio.sleep(PASS_INTERVAL_S)  # the workers read the tombstones meanwhile, and stop writing
            live = await live_keys(conn, namespace, subject)
        audit = audit.model_copy(update={"keys_destroyed": len(destroyed)})
        async with transactions.transaction(producer):  # the keys destroyed are accounted for, settled or not
            await transactions.all_sent([await producer.send(audit_topic, audit.model_dump_json().encode(),
                                                             key=subject.encode())])
        if live:
            raise ErasureUnsettled(f"keys of the subject were written again after {MAX_PASSES} passes of tombstones; "
                                   "run the erasure again (it is safe)")
    finally:
        await producer.stop()
    return audit


async def erase_cccd(conn: KafkaConnection, namespace: str, pepper: bytes, cccd: str, *, requested_by: str,
                     via: str = "cli") -> ErasureAudit:
    """Erase the applicant with this CCCD number (the operator CLI and the gateway's endpoint call this)."""
    return await erase_subject(conn, namespace, crypto.cccd_subject(pepper, cccd), requested_by=requested_by, via=via)


async def erase_applicant(conn: KafkaConnection, namespace: str, pepper: bytes,
                          identifiers: Sequence[tuple[str, str]], *, requested_by: str,
                          via: str = "cli") -> list[tuple[str, ErasureAudit]]:
    """Erase an applicant by every identifier they are known by (`cccd`, `phone`, `email`, `zalo`): one subject
    each, each with its audit record, in the order given (the same subject once); returns (kind, audit) pairs.

    Intake seals an applicant under the CCCD when the dossier carries one, else under the phone, the e-mail or
    the Zalo id (`privacy.applicant.subject_of`): a citizen whose dossiers came some with a CCCD and some without
    has copies under several subjects, and an erasure by the CCCD alone leaves the others readable. The citizen
    (or the operator) names every identifier they used; a failure raises after the subjects before it are erased
    (each erasure is complete or not done: running it again is safe). Every audit record is checked first: a
    requester it cannot hold is a ValueError before any key is destroyed.
    """
    unusable = [kind for kind, value in identifiers if not crypto.identifies(kind, value)]
    if unusable:  # a placeholder would name everyone sealed under it, or no one
        raise ValueError(f"not an identifier of one person: {', '.join(unusable)}")
    for kind, value in identifiers:  # every audit record checked before the first subject's keys go
        audit_record(crypto.identifier_subject(pepper, kind, value), requested_by, via)
    audits: list[tuple[str, ErasureAudit]] = []
    seen: set[str] = set()
    for kind, value in identifiers:
        subject = crypto.identifier_subject(pepper, kind, value)
        if subject not in seen:
            seen.add(subject)
            audits.append((kind, await erase_subject(conn, namespace, subject, requested_by=requested_by, via=via)))
    return audits
