"""`commune-bus trace <dossier code | event id | trace id>`: where did my record go?

Reads, committed records only and up to where each topic ends now: the raw topics
(shared and bound to sources), intake's dead letters, the canonical topics,
notify's status topic and its dead letters. It finds the raw record(s) whose event
id, dossier code (CloudEvents subject, `data.dossier_code`, the portal's `MaHoSo`)
or trace id is the query, exactly (never a record that merely contains it: an
applicant's CCCD or phone finds nothing), the dead letters that point back at them (`dlq.source.*`),
the canonical events with that id, subject (dossier code) or trace id, and every
notification attempt made for those events (or carrying that trace id), per channel
and recipient reference (webhook subscribers included), and prints them in time
order, each with its trace id. Only metadata is
shown (topics, offsets, types, reasons, outcomes): never a value. The names a
producer chose (source, event id, subject) may hold a citizen's number all the same
(`/citizens/001099012345`, ADR 0026): numbers of nine digits or more and e-mails in
them are masked, dossier codes' digit groups kept, unless `--show-personal-data`. At
most `MAX_STEPS` steps are kept (`Timeline.truncated`).
With `--since` (`?since=` at the gateway) each partition is read from the first record
timestamped at or after that time (Kafka's time index), not from its start: at national
scale a whole canonical topic is days of reading, a dossier's last month is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from aiokafka import ConsumerRecord
from aiokafka.errors import TopicAuthorizationFailedError
from pydantic import ValidationError
from rich.table import Table

from schemas import trace as trace_context
from schemas import wire
from schemas.deadletter import DeadLetterContext
from schemas.notification import NotificationStatus
from schemas.topics import CANONICAL, DLQ_INTAKE, DLQ_NOTIFY, NOTIFY_STATUS, RAW, namespaced, scoped
from services.cli.errors import TopicNotVisible
from services.cli.masking import names_masked
from services.cli.options import (
    DEFAULT_BOOTSTRAP,
    MOMENT_FORMS,
    Bootstrap,
    Namespace,
    ShowPersonalData,
    connection,
    moment,
)
from services.cli.plain import markup, text
from services.cli.render import console, err_console
from services.common import clients, closing
from services.common.admin import partition_counts
from services.common.changelog import read_to_end
from services.common.settings import KafkaConnection
from services.privacy.crypto import APPLICANT_SUBJECT

Record = ConsumerRecord[bytes, bytes]
PIPELINE = ("raw", "dead letter", "canonical", "notification", "notification dead letter")
"""The stages in the order a record passes them."""
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
        """A raw record that mentions the query (a structured record's `traceparent` included), or whose
        `ce_traceparent` header has it as trace id."""
        headers = {k: wire.lenient_text(v) for k, v in rec.headers}
        trace = trace_context.trace_id(headers.get("ce_traceparent")) or ""
        if not (self._mentions(rec) or (trace and self.query == trace)):
            return
        trace = trace or trace_context.trace_id(_json_field(rec.value, "traceparent")) or ""
        self.raw_positions[(rec.topic, rec.partition, rec.offset)] = trace
        event_id = headers.get("ce_id") or _json_field(rec.value, "id")
        if event_id is not None:
            self.event_ids.add(event_id)
        source = headers.get("ce_source") or headers.get("source") or _json_field(rec.value, "source") or "?"
        self._add(Step(rec.timestamp, "raw", self._where(rec), f"received from {self._shown(source)}", trace))

    def intake_dead_letter(self, rec: Record) -> None:
        try:
            ctx = DeadLetterContext.from_headers(list(rec.headers))
        except (KeyError, ValueError):
            return
        origin = (ctx.source_topic, ctx.source_partition, ctx.source_offset)
        if origin not in self.raw_positions and not self._mentions(rec):
            return
        # the raw record's trace: a dead letter sealed whole (ADR 0026) keeps no traceparent in clear; an older one,
        # or one never sealed, still does
        parent = wire.lenient_text(dict(rec.headers).get("ce_traceparent", b""))
        self._add(Step(rec.timestamp, "dead letter", self._where(rec),
                               f"{ctx.reason.value} ({ctx.field}): {ctx.message} "
                               f"[from {ctx.source_topic}/{ctx.source_partition}/{ctx.source_offset}]",
                               trace_context.trace_id(parent) or self.raw_positions.get(origin, "")))

    def canonical(self, rec: Record) -> None:
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


def _json_field(value: bytes | None, name: str) -> str | None:
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    found = obj.get(name) if isinstance(obj, dict) else None
    return found if isinstance(found, str) else None


async def _topics(conn: KafkaConnection, namespace: str) -> tuple[list[str], list[str]]:
    """The raw topics (shared, and bound to sources: `<raw>.src.<entry>`) and the canonical ones, as they exist."""
    admin = clients.admin(conn)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:  # aiokafka's close swallows a cancellation that reaches it: a trace stopped at its deadline would go on
        await closing.close_within("commune-bus-cli-trace", "admin client", admin.close)
    shared = [namespaced(t.name, namespace) for t in RAW.values()]
    raw = sorted(t for t in existing if any(t == s or t.startswith(f"{s}.src.") for s in shared))
    canonical = [n for n in (namespaced(t.name, namespace) for t in CANONICAL.values()) if n in existing]
    return raw, canonical


async def _read(conn: KafkaConnection, topics: Sequence[str], offer: Callable[[Record], None],
                since_ms: int | None, unreadable: list[str], invisible: list[str]) -> None:
    """Offer every committed record of `topics` (all partitions, from `since_ms` if given, up to their current end),
    topic by topic; a topic this principal may not read is added to `unreadable` and the others are read (operators
    and the gateway may not read the raw topics, which hold personal data in clear: ADR 0015), one it may not even
    describe (or absent) to `invisible`."""
    counts = await partition_counts(conn, topics)
    invisible.extend(t for t in topics if t not in counts)
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    fetcher.addFilter(_not_authorized)  # said once, by the trace's own note, not once per fetch by aiokafka
    try:
        for topic in topics:
            if topic in counts:
                try:
                    await read_to_end(conn, topic, range(counts[topic]), lambda _p, rec: offer(rec),
                                      client_id="commune-bus-cli-trace", since_ms=since_ms)
                except TopicAuthorizationFailedError:
                    unreadable.append(topic)
    finally:
        fetcher.removeFilter(_not_authorized)


def _not_authorized(record: logging.LogRecord) -> bool:
    """aiokafka's fetcher warns "Not authorized to read from topic" for every fetch of a topic this principal may not
    read (an operator's raw topics: 18 lines in a fresh-clone walkthrough); the trace names such topics itself."""
    return not str(record.msg).startswith("Not authorized to read from topic")


SINCE_HELP = f"how far back to read: {MOMENT_FORMS}; default: everything the topics hold"


def since_ms(text: str, now: datetime | None = None) -> int:
    """Epoch milliseconds of a `--since` text (`SINCE_HELP`); ValueError, naming the forms, for anything else."""
    try:
        return int(moment(text, now).timestamp() * 1000)
    except ValueError as exc:
        raise ValueError(f"since: {exc}") from None


@dataclass(frozen=True)
class Timeline:
    steps: list[Step]
    truncated: bool = False
    """More than `MAX_STEPS` steps were found: the first ones found are kept."""
    unreadable: tuple[str, ...] = ()
    """Topics this principal may not read, left out (an operator's: the raw topics)."""
    invisible: tuple[str, ...] = ()
    """Registry topics of the namespace this principal may not describe (no ACL) or that do not exist, left out."""
    read: int = 0
    """How many topics were visible, read or not."""


async def trace_timeline(conn: KafkaConnection, namespace: str, query: str, since: int | None = None,
                         show_personal_data: bool = False) -> Timeline:
    """Every step of the records `query` names, in time order (also the gateway's `GET /v1/trace/{query}`, masked);
    with `since` (epoch ms, `since_ms`), of the records timestamped from then on."""
    tracer = Tracer(query, show_personal_data=show_personal_data)
    raw, canonical = await _topics(conn, namespace)  # those listed: this principal may describe them
    unreadable: list[str] = []
    registry = [namespaced(t.name, namespace) for t in (*RAW.values(), *CANONICAL.values())]
    invisible = [name for name in registry if name not in {*raw, *canonical}]
    fixed = [scoped(t, namespace).name for t in (DLQ_INTAKE, NOTIFY_STATUS, DLQ_NOTIFY)]
    await _read(conn, raw, tracer.raw, since, unreadable, invisible)
    await _read(conn, fixed[:1], tracer.intake_dead_letter, since, unreadable, invisible)
    await _read(conn, canonical, tracer.canonical, since, unreadable, invisible)
    await _read(conn, fixed[1:2], tracer.notification, since, unreadable, invisible)
    await _read(conn, fixed[2:], tracer.notify_dead_letter, since, unreadable, invisible)
    read = len(raw) + len(canonical) + len([t for t in fixed if t not in invisible])
    return Timeline(tracer.timeline(), tracer.truncated, tuple(unreadable), tuple(invisible), read)


async def trace_record(conn: KafkaConnection, namespace: str, query: str, since: int | None = None) -> list[Step]:
    """`trace_timeline`'s steps."""
    return (await trace_timeline(conn, namespace, query, since)).steps


def table(steps: list[Step]) -> Table:
    out = Table("time (UTC)", "stage", "where", "what", "trace", show_lines=False)
    for s in steps:
        at = datetime.fromtimestamp(s.at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        out.add_row(*(text(cell) for cell in (at, s.stage, s.where, s.what, s.trace)))
    return out


def trace(query: Annotated[str, typer.Argument(help="A dossier code, an event id or a 32-hex trace id")],
          bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "",
          since: Annotated[str | None, typer.Option(help=SINCE_HELP)] = None,
          show_personal_data: ShowPersonalData = False) -> None:
    """Where did a record go: raw record(s), dead letters with reasons, canonical events, notifications, in order."""
    if not query.strip():
        err_console.print("trace: give a dossier code, an event id or a trace id")
        raise typer.Exit(2)
    try:
        start = None if since is None else since_ms(since)
    except ValueError as exc:
        err_console.print(f"trace: {exc}")
        raise typer.Exit(2) from None
    found = asyncio.run(trace_timeline(connection(bootstrap), namespace, query, start, show_personal_data))
    if not found.read:  # "nothing found" would say the record is nowhere: nowhere was looked at
        raise TopicNotVisible(found.invisible)
    if found.invisible:
        err_console.print(f"not read, not visible to this principal (no ACL) or absent: "
                          f"{markup(', '.join(found.invisible))} (check --namespace; records only they hold are not "
                          "shown)", soft_wrap=True)
    if found.unreadable:
        err_console.print(f"not read, this principal may not read them: {markup(', '.join(found.unreadable))} (an "
                          "operator may not read the raw topics: records only they hold, and dead letters found only "
                          "through them, are not shown)")
    if not found.steps:
        err_console.print(f"nothing found for {markup(repr(query))}")
        raise typer.Exit(1)
    console.print(table(found.steps))
    if found.truncated:
        err_console.print(f"only the first {MAX_STEPS} steps found are shown")


def _text(value: object) -> str | None:
    """A member's text for an exact match: a string stripped, a number as written (not a bool), else None."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None
