"""What a request's body becomes: a refusal with its reason, or the raw records to publish and the 202 answer.

Pure (no Kafka, no clock): the body is split and each record validated by intake's `normalise` under
intake's own per-record limit (`GATEWAY_MAX_RECORD_BYTES` = `INTAKE_MAX_RECORD_BYTES`), checked again on the
record as it will be published, so nothing accepted here is dead-lettered by intake for its size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas import trace, wire
from schemas.deadletter import Reason
from schemas.events import Family
from services.gateway import api
from services.gateway.batch import BodyError, RecordError, check, split_body
from services.gateway.claims import Answer, Records
from services.sources.registry import Source


@dataclass(frozen=True)
class Refused:
    answer: Answer


@dataclass(frozen=True)
class Publish:
    records: Records
    answer: Answer
    families: Counter[Family] = field(default_factory=Counter)


def plan(body: bytes, content_type: str, *, family: Family | None, commune: str | None, caller: Source,
         raw_topic: dict[Family, str], max_records: int, max_record_bytes: int,
         traceparent: str | None = None) -> Refused | Publish:
    """`traceparent`: the request's W3C header; a valid one becomes every event's trace (an invalid one is ignored,
    as W3C Trace Context asks), else each event keeps the trace derived from its source and id."""
    if traceparent is not None and not trace.is_valid(traceparent):
        traceparent = None
    try:
        records = split_body(body, content_type, max_records)
    except BodyError as exc:
        return Refused(Answer(400, api.error("bad_body", str(exc))))
    checked = check(records, family=family, commune=commune, caller=caller, max_bytes=max_record_bytes)
    errors = list(checked.errors)
    out: Records = []
    if not errors:  # every record accepted: events[i] is records[i]
        first: dict[tuple[str, str], int] = {}
        for index, (fam, event) in enumerate(checked.events):
            if (earlier := first.setdefault((event.source, event.id), index)) != index:  # intake would dead-letter it
                errors.append(RecordError(index=index, field="id", reason=Reason.DUPLICATE_EVENT.value,
                                          message=f"id: the same event (source and id) as record {earlier}: send it "
                                          "once"))
            if traceparent is not None and event.traceparent != traceparent:
                event = event.model_copy(update={"traceparent": traceparent})
                checked.events[index] = (fam, event)
            rec = wire.encode(event)
            if len(rec.value) > max_record_bytes:
                errors.append(RecordError(index=index, field="(record)", reason=Reason.PAYLOAD_TOO_LARGE.value,
                                          message=f"the record as published is {len(rec.value)} bytes; the limit "
                                          f"is {max_record_bytes}"))
            out.append((raw_topic[fam], rec))
    if errors:
        kind, status = ("unauthorised_source", 403) if checked.unauthorised else ("invalid_records", 422)
        bad = checked.rejected or len({e.index for e in errors})
        unlisted = f" ({checked.omitted} more problems not listed)" if checked.omitted else ""
        return Refused(Answer(status, api.error(kind, f"{bad} of {len(records)} records rejected; nothing was "
                                                f"published{unlisted}", errors)))
    accepted = api.AcceptedBody(accepted=len(out), ids=[e.id for _, e in checked.events],
                                trace_ids=[trace.trace_id(e.traceparent) or "" for _, e in checked.events])
    return Publish(out, Answer(202, accepted.model_dump()), Counter(f for f, _ in checked.events))


def rejected_counts(result: Refused) -> dict[str, Any]:
    """Log fields of a refusal: counts and the status, never a record's content."""
    body = result.answer.body
    return {"status": result.answer.status, "error": body.get("error"), "bad": len(body.get("errors", []))}
