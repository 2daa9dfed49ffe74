"""`commune-bus notify-dlq list|replay`: notify's dead letters (commune.dlq.notify), and sending them again (ADR 0033).

A replay writes each dead letter's request, under a new id, to commune.notify.replays (keyed by its commune), and its
replay-log entry, in one transaction (the one replay writer of a namespace, as `dlq replay`): a dead letter is
replayed once, or not at all. Notify reads that topic as an input (read_committed), like the canonical ones: the
worker owning the commune sends the request (contacts opened at delivery, its id the provider's Idempotency-Key),
and finds it done if a replay of it was sent already.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

import typer
from rich.table import Table

from schemas.notification import ChannelKind
from schemas.replay import is_replayed
from schemas.topics import DLQ_NOTIFY, NOTIFY_REPLAYS, scoped
from services.cli.dlq import Stored, read_into, replayed_keys
from services.cli.errors import TopicNotVisible
from services.cli.kafka_io import Unacknowledged
from services.cli.masking import names_masked
from services.cli.notify_letters import (
    NotifyFilters,
    NotifyLetter,
    emergencies_first,
    letter,
    matches,
    may_have_reached,
    replayed,
    why_not,
)
from services.cli.options import DEFAULT_BOOTSTRAP, Bootstrap, Namespace, ShowPersonalData, connection, moment
from services.cli.plain import counted, json_text, markup
from services.cli.render import console, err_console, folded_table
from services.cli.replaying import INTERRUPTED, RUN_AGAIN, Progress, Redrive, replay_each
from services.common.admin import partition_counts
from services.common.settings import KafkaConnection
from services.common.transactions import SendFailed

app = typer.Typer(no_args_is_help=True, help="Dead letters of notify (commune.dlq.notify), and sending them again")

ReasonOpt = Annotated[str | None, typer.Option("--reason", help="A reason, or its start: http_401, retries_exhausted")]
ChannelOpt = Annotated[ChannelKind | None, typer.Option("--channel")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Given up at or after: 12h, 30d, 90m, or an ISO date "
                                                                 "or time (naive = Vietnam time)")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Given up at or before (the same forms; "
                                                              "a date alone: to its end)")]
RecipientOpt = Annotated[str | None, typer.Option("--recipient", help="Whom it was for, as list shows it: "
                                                                      "subscriber:<name> (a webhook subscriber), "
                                                                      "officer:cb-17")]


class Listing(NamedTuple):
    topic: str
    letters: list[NotifyLetter]
    done: set[bytes]
    unreadable: int


async def notify_letters(conn: KafkaConnection, namespace: str, filters: NotifyFilters) -> Listing:
    """The matching dead letters, in offset order, with the replay log; a record that is no dead letter is counted."""
    topic = scoped(DLQ_NOTIFY, namespace).name
    done = await replayed_keys(conn, namespace)
    letters: list[NotifyLetter] = []
    unreadable = 0

    def sift(stored: Stored) -> None:
        nonlocal unreadable
        partition, offset, key, value, headers = stored
        try:
            d = letter(partition, offset, value, headers, key)
        except ValueError:
            unreadable += 1
            return
        if matches(d, filters):
            letters.append(d)

    await read_into(conn, topic, sift)
    return Listing(topic, sorted(letters, key=lambda d: (d.partition, d.offset)), done, unreadable)


async def replay(conn: KafkaConnection, namespace: str, letters: list[NotifyLetter], dlq_topic: str,
                 progress: Progress = lambda n: None) -> list[NotifyLetter]:
    """Write each letter's request (under its new id) to commune.notify.replays, keyed by its commune, and its
    replay-log entry (`replay_each`: a transaction per batch); the letters written, in order: emergencies first
    (`emergencies_first`: notify reads a partition in order). Letters the log holds once the writer has fenced any
    other replay are left out. A refused write aborts its transaction (SendFailed): those letters stay unreplayed
    (the emergencies' transactions, the first, are the likeliest to have committed)."""
    replays = scoped(NOTIFY_REPLAYS, namespace).name
    if replays not in await partition_counts(conn, [replays]):
        raise TopicNotVisible([replays])

    def redrive(d: NotifyLetter) -> Redrive:
        # keyed by commune: the partition of its commune's events and ledger (ADR 0020), as every input
        return replays, replayed(d, dlq_topic)[1], d.request.commune.encode(), []

    return await replay_each(conn, namespace, "commune-bus-notify-dlq-replay", dlq_topic, emergencies_first(letters),
                             redrive, progress)


def _filters(reason: str | None, channel: ChannelKind | None, since: str | None, until: str | None,
             recipient: str | None) -> NotifyFilters:
    try:
        return NotifyFilters(reason, channel, moment(since) if since else None,
                             moment(until, day_end=True) if until else None, recipient)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since/--until") from None


def _table(letters: list[NotifyLetter], replayed_at: set[str], now: datetime) -> Table:
    table = folded_table("dlq", "reason", "channel", "rule", "recipient", "commune", "given up at", "attempts",
                         "replay")
    for d in letters:
        r = d.request
        state = "replayed" if d.position in replayed_at else (why_not(d, now) or "can be replayed")
        table.add_row(*(markup(x) for x in (d.position, d.reason, r.channel.value, r.rule, r.recipient.ref, r.commune,
                                            d.rejected_at.isoformat(), str(d.attempts), state)))
    return table


@app.command("list")
def list_(reason: ReasonOpt = None, channel: ChannelOpt = None, since: SinceOpt = None, until: UntilOpt = None,
          recipient: RecipientOpt = None,
          as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
          bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "",
          show_personal_data: ShowPersonalData = False) -> None:
    """List notify's dead letters matching the filters: why each was given up and whether it can be sent again.
    Contacts are never shown (the letters hold none in clear); recipients are references such as officer:cb-01. A
    personal number or e-mail in an event's id (a producer's choice) is masked, as `trace` and `dlq list` mask it."""
    filters = _filters(reason, channel, since, until, recipient)
    topic, letters, done, unreadable = asyncio.run(notify_letters(connection(bootstrap), namespace, filters))
    at = {d.position for d in letters if is_replayed(done, topic, d.partition, d.offset, d.digest)}
    now = datetime.now(UTC)
    if as_json:
        for d in letters:
            r = d.request
            event_id = r.event_id if show_personal_data else names_masked(r.event_id)
            # the notification id hashes the event id: of a masked one, trying every number finds it again
            nid = r.notification_id if event_id == r.event_id else None
            row = {"dlq": d.position, "reason": d.reason, "channel": r.channel.value, "rule": r.rule,
                   "recipient": r.recipient.ref, "commune": r.commune, "notification_id": nid,
                   "event_id": event_id, "rejected_at": d.rejected_at.isoformat(), "attempts": d.attempts,
                   "replayed": d.position in at, "not_replayable": why_not(d, now)}
            typer.echo(json_text(json.dumps(row, ensure_ascii=False)))
    else:
        console.print(_table(letters, at, now))
    err_console.print(f"{counted(len(letters), 'dead letter')} in {markup(topic)} match, {len(at)} of them already "
                      "replayed" + (f"; {unreadable} records not read as notify dead letters" if unreadable else ""))


@app.command("replay")
def replay_(reason: ReasonOpt = None, channel: ChannelOpt = None, since: SinceOpt = None, until: UntilOpt = None,
            recipient: RecipientOpt = None, dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
            bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "") -> None:
    """Send matching dead letters again, once the cause is mended (a subscriber's secret, a provider's account):
    each under a new id, through commune.notify.replays, to the worker owning its commune, emergencies (storm
    warnings) first. A dead letter is never replayed twice; one left incomplete for its size or past its expiry is
    not replayed (counted, said). One given up after failures that may have reached the provider
    (`retries_exhausted:...`, a timeout say) keeps the original's Idempotency-Key: a provider that has it answers it
    as a repeat instead of sending it twice (counted, said)."""
    conn = connection(bootstrap)
    filters = _filters(reason, channel, since, until, recipient)
    topic, letters, done, _ = asyncio.run(notify_letters(conn, namespace, filters))
    now = datetime.now(UTC)
    fresh = [d for d in letters if not is_replayed(done, topic, d.partition, d.offset, d.digest)]
    todo = [d for d in fresh if why_not(d, now) is None]
    left = len(fresh) - len(todo)
    skipped = f"; {left} cannot be (incomplete, expired or out of range: see list)" if left else ""
    if dry_run:
        err_console.print(f"would replay {len(todo)} of {len(letters)} matching dead letters{skipped}")
        return
    replayed: list[int] = []
    try:
        written = asyncio.run(replay(conn, namespace, todo, topic, replayed.append)) if todo else []
    except SendFailed as exc:
        err_console.print(f"replay stopped: {markup(exc)}; the letters of the aborted transaction are not marked "
                          "replayed, run the command again once the cause is fixed")
        raise typer.Exit(1) from None
    except Unacknowledged as exc:
        err_console.print(f"replay stopped: {markup(exc)}; {RUN_AGAIN}", soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED.format(replayed=sum(replayed), todo=len(todo)), soft_wrap=True)
        raise typer.Exit(130) from None
    kept = sum(may_have_reached(d) for d in written)
    same_key = f"; {kept} under the original's Idempotency-Key (they may have reached the provider)" if kept else ""
    # those another replay wrote between the listing and this one's start were left out: already replayed too
    already = len(letters) - len(fresh) + len(todo) - len(written)
    err_console.print(f"replayed {counted(len(written), 'dead letter')}; {already} matching were already "
                      f"replayed{skipped}{same_key}")
