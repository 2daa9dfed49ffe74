"""`commune-bus trace <dossier code | event id | trace id>`: where did my record go?

Reads, committed records only and up to where each topic ends now: the raw topics
(shared and bound to sources), intake's dead letters, the canonical topics,
notify's status topic and its dead letters, and offers them to the pure `Tracer`
(`services.cli.tracer`: which records the query names, and what is shown of them); the
steps found are printed in time order, each with its trace id.
With `--since` (`?since=` at the gateway) each partition is read from the first record
timestamped at or after that time (Kafka's time index), not from its start: at national
scale a whole canonical topic is days of reading, a dossier's last month is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from rich.table import Table

from schemas.topics import CANONICAL, DLQ_INTAKE, DLQ_NOTIFY, NOTIFY_STATUS, RAW, namespaced, scoped
from services.cli.errors import TopicMissing, TopicNotVisible
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
from services.cli.render import console, err_console, folded_table
from services.cli.tracer import MAX_STEPS, Record, Step, Tracer
from services.common import clients, closing
from services.common.admin import partition_counts, topic_errors
from services.common.changelog import read_to_end
from services.common.settings import KafkaConnection


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
    out = folded_table("time (UTC)", "stage", "where", "what", "trace")
    for s in steps:
        out.add_row(*(text(cell) for cell in (_shown_at(s.at_ms), s.stage, s.where, s.what, s.trace)))
    return out


def _shown_at(ms: int) -> str:
    """A step's time; as the number it is when no date is (a raw topic left at CreateTime keeps any time a producer
    sends: one before the year 1 raised out of the table, and the trace printed nothing; audit)."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


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
    if start is not None and start > datetime.now(UTC).timestamp() * 1000:  # it said "nothing found" (CLI trial)
        err_console.print("trace: --since names a time still to come, when no record is stamped yet: give one past "
                          f"({MOMENT_FORMS})")
        raise typer.Exit(2)
    conn = connection(bootstrap)
    found = asyncio.run(trace_timeline(conn, namespace, query, start, show_personal_data))
    codes = asyncio.run(topic_errors(conn, found.invisible)) if found.invisible else {}
    by_code = {why: [t for t, code in codes.items() if code == errno] for why, errno in (
        ("they do not exist; check --namespace", UnknownTopicOrPartitionError.errno),
        ("this principal may not describe them (no ACL)", TopicAuthorizationFailedError.errno))}
    by_code["the broker did not describe them"] = [t for t in codes if not any(t in ts for ts in by_code.values())]
    absent, forbidden, other = by_code.values()  # as `tail` and `dlq` tell them apart: the describe's error code
    if not found.read:  # "nothing found" would say the record is nowhere: nowhere was looked at
        if absent and not forbidden and not other:
            raise TopicMissing(*absent)
        if forbidden and not absent and not other:
            raise TopicAuthorizationFailedError(", ".join(forbidden))
        raise TopicNotVisible(found.invisible)
    for why, topics in by_code.items():
        if topics:
            err_console.print(f"not read ({why}): {markup(', '.join(topics))}; records only they hold are not shown",
                              soft_wrap=True)
    if found.unreadable:
        err_console.print(f"not read, this principal may not read them: {markup(', '.join(found.unreadable))} (an "
                          "operator may not read the raw topics: records only they hold, and dead letters written "
                          "before their lookup names (ADR 0038) found only through them, are not shown)")
    if not found.steps:
        err_console.print(f"nothing found for {markup(repr(query))}")
        raise typer.Exit(1)
    console.print(table(found.steps))
    if found.truncated:
        err_console.print(f"only the first {MAX_STEPS} steps found are shown")
