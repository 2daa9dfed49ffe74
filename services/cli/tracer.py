"""The pure core of `commune-bus trace`: which records of each stage a query names, and the steps shown of them.

It finds the raw record(s) whose event
id, dossier code (CloudEvents subject, `data.dossier_code`, the portal's `MaHoSo`)
or trace id is the query, exactly (never a record that merely contains it: an
applicant's CCCD or phone finds nothing), the dead letters whose lookup names (`dlq.lookup.*`, ADR 0038: the same
names, kept in clear where they identify nobody) are the query or that point back at those raw records
(`dlq.source.*`: a dead letter written before lookup names, read by a principal that may read the raw topics),
the canonical events with that id, subject (dossier code) or trace id, and every
notification attempt made for those events (or carrying that trace id), per channel
and recipient reference (webhook subscribers included). Only metadata is
shown (topics, offsets, types, reasons, outcomes): never a value. The names a
producer chose (source, event id, subject) may hold a citizen's number all the same
(`/citizens/001099012345`, ADR 0026): numbers of nine digits or more and e-mails in
them are masked, dossier codes' digit groups kept, unless `--show-personal-data`. At
most `MAX_STEPS` steps are kept (`Tracer.truncated`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from schemas import trace as trace_context
from schemas import wire
from schemas.deadletter import DeadLetterContext
from schemas.notification import NotificationStatus
from services.cli.masking import names_masked
from services.intake import portal
from services.privacy.crypto import APPLICANT_SUBJECT

Record = ConsumerRecord[bytes, bytes]
PIPELINE = ("raw", "canonical", "dead letter", "notification", "notification dead letter")
"""The stages in the order they are written: a record before what is made of it, and in one intake transaction its
canonical events (a record batch each partition, stamped as built) before its dead letters (sent after them)."""
MAX_STEPS = 1000
"""Steps one trace keeps (a dossier's whole life is a few dozen); past them it says it was truncated."""
NAMING_HEADERS = ("ce_id", "ce_subject")


@dataclass(frozen=True, order=True)
class Step:
    at_ms: int
    stage: str
    where: str
    what: str
    trace: str = ""


@dataclass
class Tracer:
    """Pure: offered the records of each stage in turn (raw, intake dead letters, canonical, notifications)."""

    query: str
    steps: list[Step] = field(default_factory=list)
    raw_positions: dict[tuple[str, int, int], str] = field(default_factory=dict)
    """Where each raw record that matched is, and its trace id ("" if none)."""
    event_ids: set[str] = field(default_factory=set)
    truncated: bool = False
    """A step was dropped (`MAX_STEPS`): nothing offered after it can be listed, so it is not looked at, and the ids
    and positions remembered stop growing (a producer can give one dossier code or trace id to millions of events,
    which a trace in the gateway held every id of)."""
    show_personal_data: bool = False
    """Show the names producers chose (source, event id, subject) as they are; by default long numbers and e-mails in
    them are masked (`masking.names_masked`), except in the name the query gave (the operator typed it)."""

    def _shown(self, name: str) -> str:
        return name if self.show_personal_data or name == self.query else names_masked(name)

    def _where(self, rec: Record) -> str:
        return f"{rec.topic}/{rec.partition}/{rec.offset}"

    def _add(self, step: Step) -> None:
        if len(self.steps) < MAX_STEPS:
            self.steps.append(step)
        else:
            self.truncated = True

    def _mentions(self, rec: Record) -> bool:
        """The record's event id, dossier code or trace id is the query (headers, or the JSON value's members)."""
        if any(k in NAMING_HEADERS and wire.lenient_text(v).strip() == self.query for k, v in rec.headers):
            return True
        if not rec.value or self.query.encode() not in rec.value:  # the cheap test first: most records go here
            return False
        try:
            obj = orjson.loads(rec.value)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(obj, dict):
            return False
        data = obj.get("data")
        names = (obj.get("id"), obj.get("subject"), obj.get("MaHoSo"),
                 data.get("dossier_code") if isinstance(data, dict) else None,
                 trace_context.trace_id(obj["traceparent"]) if isinstance(obj.get("traceparent"), str) else None)
        # as intake reads them: a number (`"id": 1001`, often why the record was dead-lettered) or text with spaces
        # around it names what its text does; still the whole value, never a part of it
        return any(_text(name) == self.query for name in names if name is not None)

    def raw(self, rec: Record) -> None:
        """A raw record that mentions the query (a structured record's `traceparent` included), or whose sender's
        trace, where intake takes it (`_sent_trace`), has it as trace id."""
        if self.truncated:
            return
        headers = {k: wire.lenient_text(v) for k, v in rec.headers}
        in_headers = trace_context.trace_id(_header_trace(rec)) or ""
        if not (self._mentions(rec) or (in_headers and self.query == in_headers)):
            return
        trace = _sent_trace(rec, in_headers)
        if not (trace == self.query or self._mentions(rec)):  # a header the record's own attribute overrides
            return
        self.raw_positions[(rec.topic, rec.partition, rec.offset)] = trace
        event_id = headers.get("ce_id") or _json_field(rec.value, "id")
        if event_id is not None:
            self.event_ids.add(event_id)
        source = headers.get("ce_source") or headers.get("source") or _json_field(rec.value, "source") or "?"
        self._add(Step(rec.timestamp, "raw", self._where(rec), f"received from {self._shown(source)}", trace))

    def intake_dead_letter(self, rec: Record) -> None:
        if self.truncated:
            return
        try:
            ctx = DeadLetterContext.from_headers(list(rec.headers))
        except (KeyError, ValueError):
            return
        origin = (ctx.source_topic, ctx.source_partition, ctx.source_offset)
        # its lookup names (ADR 0038) find it without the raw topics (an operator, the gateway); one written before
        # them is found through its raw record (`dlq.source.*`), or by the names it kept in clear (never sealed)
        if self.query not in ctx.lookups() and origin not in self.raw_positions and not self._mentions(rec):
            return
        # the raw record's trace: a dead letter sealed whole (ADR 0026) keeps no traceparent in clear but its lookup
        # trace id; an older one, or one never sealed, still does
        parent = wire.lenient_text(dict(rec.headers).get("ce_traceparent", b""))
        names = "".join(f" {what} {self._shown(name)}" for what, name in (
            ("id", ctx.lookup_id), ("subject", ctx.lookup_subject), ("dossier", ctx.lookup_dossier)) if name)
        trace = trace_context.trace_id(parent) or ctx.lookup_trace or self.raw_positions.get(origin, "")
        more = "".join(f"; {p.reason.value} ({p.field}): {p.message}" for p in ctx.problems[1:])  # `dlq.problems`
        self._add(Step(rec.timestamp, "dead letter", self._where(rec),
                               f"{ctx.reason.value} ({ctx.field}): {ctx.message}{more} "
                               f"[from {ctx.source_topic}/{ctx.source_partition}/{ctx.source_offset}]{names}", trace))

    def canonical(self, rec: Record) -> None:
        if self.truncated:
            return
        h = {k: wire.lenient_text(v) for k, v in rec.headers if k.startswith("ce_")}
        trace = trace_context.trace_id(h.get("ce_traceparent")) or ""
        if self.query not in (h.get("ce_id"), h.get("ce_subject"), trace) and h.get("ce_id") not in self.event_ids:
            return
        self.event_ids.add(h.get("ce_id", ""))
        applicant = _applicant_subject(rec.value)
        self._add(Step(rec.timestamp, "canonical", self._where(rec),
                               f"{h.get('ce_type', '?')} id {self._shown(h.get('ce_id', '?'))} "
                               f"subject {self._shown(h.get('ce_subject', '?'))}"
                               + (f" applicant {applicant}" if applicant else ""),
                               trace))

    def notification(self, rec: Record) -> None:
        if self.truncated:
            return
        try:
            status = NotificationStatus.model_validate_json(rec.value or b"")
        except ValidationError:
            return
        trace = trace_context.trace_id(status.traceparent) or ""
        if status.event_id not in self.event_ids and self.query not in (status.notification_id, trace):
            return
        extra = f": {status.reason}" if status.reason else ""
        self._add(Step(rec.timestamp, "notification", self._where(rec),
                               f"{status.channel.value} to {status.recipient_ref}: {status.outcome.value} "
                               f"(attempt {status.attempt}, {status.kind.value}, id {status.notification_id}){extra}",
                               trace))

    def notify_dead_letter(self, rec: Record) -> None:
        if self.truncated:
            return
        event_id = _json_field(rec.value, "event_id")
        trace = trace_context.trace_id(_json_field(rec.value, "traceparent")) or ""
        if event_id not in self.event_ids and self.query != trace:
            return
        reason = wire.lenient_text(dict(rec.headers).get("dlq.reason", b"?"))
        self._add(Step(rec.timestamp, "notification dead letter", self._where(rec),
                               f"given up: {reason} (notification {_json_field(rec.value, 'notification_id')})",
                               trace))

    def timeline(self) -> list[Step]:
        """By time; within one millisecond in pipeline order (a raw record before the event made of it)."""
        return sorted(self.steps, key=lambda s: (s.at_ms, PIPELINE.index(s.stage), s.where))


def _applicant_subject(value: bytes | None) -> str | None:
    """The pseudonymous subject a canonical dossier event's applicant is sealed under (binary mode: the value is the
    event's data), what `commune-bus erase --subject` takes: an applicant without a CCCD, phone, e-mail or Zalo id
    is sealed under their dossier's (`d-`; a random `r-` per event before 2026-12-03), which nothing else names.
    None for any other value."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    applicant = data.get("applicant") if isinstance(data, dict) else None
    subject = applicant.get("subject") if isinstance(applicant, dict) else None
    return subject if isinstance(subject, str) and APPLICANT_SUBJECT.fullmatch(subject) else None


def _header_trace(rec: Record) -> str | None:
    """The traceparent a raw record's headers carry as intake reads them: a binary-mode record's `ce_traceparent` is
    its attribute; any other record's sender may put one in a `traceparent` or `ce_traceparent` header
    (`trace.sent_in`)."""
    if wire.is_binary_mode(rec.headers):
        return wire.lenient_text(dict(rec.headers).get("ce_traceparent") or b"") or None
    return trace_context.sent_in(rec.headers)


def _sent_trace(rec: Record, in_headers: str) -> str:
    """The trace id of the sender's traceparent as intake gives it to the event: a structured record's own
    `traceparent` attribute before any header (`normalise._traced`), else the headers' (`_header_trace`)."""
    if wire.is_binary_mode(rec.headers):
        return in_headers
    try:
        obj = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError:
        return in_headers
    if isinstance(obj, dict) and "traceparent" in obj and not portal.is_portal_shape(obj):
        own = obj["traceparent"]
        return (trace_context.trace_id(own) if isinstance(own, str) else None) or ""
    return in_headers


def _json_field(value: bytes | None, name: str) -> str | None:
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    found = obj.get(name) if isinstance(obj, dict) else None
    return found if isinstance(found, str) else None


def _text(value: object) -> str | None:
    """A member's text for an exact match: a string stripped, a number as written (not a bool), else None."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None
