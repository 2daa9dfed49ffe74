"""When an erasure happened, by the broker's clock: what its mark is dated by (ADR 0043).

A raw record's time is the broker's append time (ADR 0042) and a key is dated by the raw record it was made for, so
the mark must be the broker's time too: dated by the eraser's own clock, an erasure from a host 91 s slow left a
dossier written 30 s before it readable (time audit). The broker tells the time of each record it stamps in its answer
to the send; the erasure's audit record, on a LogAppendTime topic (`schemas.topics.PRIVACY_AUDIT`), is that record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from aiokafka.structs import RecordMetadata

from schemas.personal import ErasureAudit, ErasureMark
from schemas.topics import STAMPED_BY_BROKER

log = structlog.get_logger("privacy.erase")


def broker_time(written: RecordMetadata) -> datetime | None:
    """When the broker appended the record its answer `written` is of, or None if it did not stamp it (a CreateTime
    topic answers with the producer's own time, which is no better than the host's clock)."""
    stamped = written.timestamp
    if written.timestamp_type != STAMPED_BY_BROKER or stamped is None or stamped < 0:
        return None
    return datetime.fromtimestamp(stamped / 1000, UTC)


def erasure_mark(audit: ErasureAudit, logged: RecordMetadata, margin: timedelta) -> ErasureMark:
    """The erasure's mark: its audit record's append time (`logged`, the broker's answer to the audit record, written
    first in the erasure's transaction), plus `margin`. Whatever was written before the erasure was appended before
    it, by the brokers' clocks, which the margin covers among themselves; the eraser's own clock plays no part. (It
    did: the later of the request and the broker's time, so an eraser 2 h fast sealed erased every dossier its
    citizen sent in the next 2 h, review.) An audit topic still at CreateTime (`commune-bus topics create` not run
    since the upgrade) gives no broker time: the mark is dated by the eraser's clock, as before, and the log says so."""
    at = broker_time(logged)
    if at is None:
        log.warning("erase.mark_by_local_clock", topic=logged.topic, timestamp_type=logged.timestamp_type,
                    fix="commune-bus topics create (the audit topic's message.timestamp.type=LogAppendTime)")
    return ErasureMark(subject=audit.subject, created_up_to=(at or audit.requested_at) + margin)
