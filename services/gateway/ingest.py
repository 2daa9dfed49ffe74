"""What a request's body becomes: a refusal with its reason, or the raw records to publish and the 202 answer.

Pure (no Kafka, no clock): the body is split and each record validated by intake's `normalise` under
intake's own per-record limit (`GATEWAY_MAX_RECORD_BYTES` = `INTAKE_MAX_RECORD_BYTES`), checked again on the
record as it will be published; then the event as intake will publish it, canonical and its applicant sealed,
is measured as intake measures it (`outputs.fits_canonical`) against intake's canonical limit
(`GATEWAY_MAX_CANONICAL_BYTES` = `INTAKE_MAX_CANONICAL_BYTES`). So nothing accepted here is dead-lettered by
intake for its size, and nothing intake would publish is refused here for it. Only the second held before: a
dossier of 1,015,441 bytes, under 1 MiB, was answered 202 and dead-lettered, its canonical form past 1,000,000.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas import trace, wire
from schemas.deadletter import Reason
from schemas.envelope import Event
from schemas.events import Family
from schemas.topics import CANONICAL_RECORD_BYTES
from services.gateway import api
from services.gateway.batch import BodyError, RecordError, check, split_body
from services.gateway.claims import Answer, Records
from services.intake.outputs import fits_canonical, record_bytes
from services.privacy.sizing import MOST_SEALING_ADDS, sealed_as_intake
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
         max_canonical_bytes: int = CANONICAL_RECORD_BYTES, intake_seals: bool = True,
         traceparent: str | None = None) -> Refused | Publish:
    """`traceparent`: the request's W3C header; a valid one becomes every event's trace (an invalid one is ignored,
    as W3C Trace Context asks), else each event keeps the trace derived from its source and id. `max_canonical_bytes`
    and `intake_seals`: intake's settings, to measure each event as intake will publish it."""
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
        for index, (fam, event) in enumerate(checked.events):
            if traceparent is not None and event.traceparent != traceparent:
                checked.events[index] = (fam, event.model_copy(update={"traceparent": traceparent}))
        out = [(raw_topic[fam], wire.encode(event)) for fam, event in checked.events]
        errors += intake_refusals(checked.indices, [e for _, e in checked.events], [rec for _, rec in out],
                                  max_record_bytes=max_record_bytes, max_canonical_bytes=max_canonical_bytes,
                                  sealed=intake_seals)
    if errors:
        kind, status = ("unauthorised_source", 403) if checked.unauthorised else ("invalid_records", 422)
        bad = checked.rejected or len({e.index for e in errors})
        unlisted = f" ({checked.omitted} more problems not listed)" if checked.omitted else ""
        return Refused(Answer(status, api.error(kind, f"{bad} of {len(records)} records rejected; nothing was "
                                                f"published{unlisted}", errors)))
    accepted = api.AcceptedBody(accepted=len(out), ids=[e.id for _, e in checked.events],
                                trace_ids=[trace.trace_id(e.traceparent) or "" for _, e in checked.events])
    return Publish(out, Answer(202, accepted.model_dump()), Counter(f for f, _ in checked.events))


def intake_refusals(indices: Sequence[int], events: Sequence[Event], published: Sequence[wire.KafkaRecord], *,
                    max_record_bytes: int, max_canonical_bytes: int, sealed: bool,
                    named: Callable[[int], str] = "record {}".format) -> list[RecordError]:
    """What intake would still dead-letter of records each valid by itself (`events`, at `indices` of the body, and
    `published`, each as it is published): the same event (source and id) again, and a record too large as published
    or once canonical. `named`: how a message names the record at an index."""
    errors: list[RecordError] = []
    first: dict[tuple[str, str], int] = {}
    for index, event, rec in zip(indices, events, published, strict=True):
        if (earlier := first.setdefault((event.source, event.id), index)) != index:
            errors.append(RecordError(index=index, field="id", reason=Reason.DUPLICATE_EVENT.value,
                                      message=f"id: the same event (source and id) as {named(earlier)}: send it once"))
        if len(rec.value) > max_record_bytes:
            errors.append(RecordError(index=index, field="(record)", reason=Reason.PAYLOAD_TOO_LARGE.value,
                                      message=f"the record as published is {len(rec.value)} bytes; the limit is "
                                      f"{max_record_bytes}"))
        elif (too_large := canonical_refusal(event, rec, max_canonical_bytes, sealed)) is not None:
            errors.append(RecordError(index=index, field="(record)", reason=Reason.PAYLOAD_TOO_LARGE.value,
                                      message=too_large))
    return errors


def canonical_refusal(event: Event, published: wire.KafkaRecord, limit: int, sealed: bool) -> str | None:
    """Why intake would dead-letter `event` (`published`, encoded) for its size once canonical, or None.

    Intake publishes the event it reads back from `published`, which is `event`, encoded again after sealing its
    applicant when it seals (`sealed`): the same encoding of the event sealed to intake's size (`sizing`) is
    measured by intake's own test. An event too far below the limit for sealing to take it over is not sealed here.
    """
    if record_bytes(published) + (MOST_SEALING_ADDS if sealed else 0) <= limit:
        return None
    canonical = wire.encode(sealed_as_intake(event)) if sealed else published
    if fits_canonical(canonical, limit):
        return None
    form = "canonical and its applicant sealed" if sealed else "canonical"
    return (f"the event as intake would publish it ({form}) is {record_bytes(canonical)} bytes with its key and "
            f"headers; the limit is {limit}")


def rejected_counts(result: Refused) -> dict[str, Any]:
    """Log fields of a refusal: counts and the status, never a record's content."""
    body = result.answer.body
    return {"status": result.answer.status, "error": body.get("error"), "bad": len(body.get("errors", []))}
