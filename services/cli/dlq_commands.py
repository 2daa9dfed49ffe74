"""`commune-bus dlq list|replay`: inspect intake's dead letters and re-drive them once fixed."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime
from typing import Annotated

import typer
from aiokafka.errors import TopicAuthorizationFailedError
from rich.progress import Progress

from schemas.deadletter import Reason
from schemas.replay import is_replayed
from schemas.times import to_utc
from services.cli import dlq, replaying
from services.cli.deadletters import DeadLetter, Filters, replayable
from services.cli.kafka_io import Unacknowledged
from services.cli.masking import names_masked
from services.cli.options import DEFAULT_BOOTSTRAP, Bootstrap, Namespace, ShowPersonalData, connection, moment
from services.cli.plain import counted, json_text, markup
from services.cli.render import console, dead_letter_table, err_console
from services.cli.replay_split import (
    UNCHECKED,
    Split,
    admin_command,
    is_placeholder,
    left_for_admin,
    split,
    why,
)
from services.common.kip430 import topic_rights
from services.common.transactions import SendFailed

app = typer.Typer(no_args_is_help=True, help="Dead letters of intake (commune.dlq.intake)")

ReasonOpt = Annotated[list[Reason] | None, typer.Option("--reason", help="Repeatable")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="CloudEvents source; trailing * = prefix")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Rejected at or after: 12h, 30d or 90m (that long "
                                                                 "ago), or an ISO date or time (naive = Vietnam time)")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Rejected at or before (the same forms; "
                                                              "a date alone: to its end)")]
TopicOpt = Annotated[list[str] | None, typer.Option("--topic", help="Raw topic the dead letter was read from (its "
                                                    "exact name, as listed), repeatable")]


REFUSED = ("this principal may not write a topic of the replay ({error}): the dead letters replayed before are in the "
           "replay log, the rest are not marked replayed")
"""Said when the broker refuses a write the rights it told beforehand allowed (not one of the topics dead letters
go back to: those are left and reported, `replay_split`)."""


PLACEHOLDER_GIVEN = ("a placeholder of a printed admin command: put the value the first run was given in its place "
                     "(the command prints no personal number or e-mail)")


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return moment(text, day_end=option == "--until")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _filters(reason: list[Reason] | None, source: str | None, since_text: str | None,
             until_text: str | None, topic: list[str] | None = None) -> Filters:
    """The filters; an `--until` before `--since` is a usage error (it matches nothing by construction)."""
    if source is not None and is_placeholder(source):
        raise typer.BadParameter(PLACEHOLDER_GIVEN, param_hint="--source")
    since, until = _moment(since_text, "--since"), _moment(until_text, "--until")
    if since is not None and until is not None and to_utc(until) < to_utc(since):
        raise typer.BadParameter(f"{until_text} is before --since {since_text} (naive times are Vietnam time)",
                                 param_hint="--until")
    return Filters(frozenset(reason or ()), source, since, until, frozenset(topic or ()))


def _set_headers(values: list[str] | None) -> dict[str, str]:
    """`--set-header K=V` values as a dict; one without `=` or with an empty K is a usage error, never dropped: a
    typo such as `commune-code:02269` would spend the one replay of those letters without the fix."""
    out: dict[str, str] = {}
    for number, value in enumerate(values or (), start=1):
        if is_placeholder(value):
            raise typer.BadParameter(PLACEHOLDER_GIVEN, param_hint="--set-header")
        key, eq, rest = value.partition("=")
        if not eq or not key.strip():  # by its place, never quoted: a value may be an applicant's number
            raise typer.BadParameter(f"the {_ordinal(number)} is not K=V with a K (e.g. commune-code=02269)",
                                     param_hint="--set-header")
        out[key] = rest
    return out


def _ordinal(number: int) -> str:
    return f"{number}{'th' if 10 <= number % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th')}"


@app.command("list")
def list_(reason: ReasonOpt = None, source: SourceOpt = None, since: SinceOpt = None, until: UntilOpt = None,
          topic: TopicOpt = None,
          as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
          bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "",
          show_personal_data: ShowPersonalData = False) -> None:
    """List dead letters matching the filters (values are not shown: they may hold personal data; personal numbers
    and e-mails in a producer's source are masked). What the dead letters hold is shown as plain text; --json lines
    are exact JSON, control characters in them escaped."""
    filters = _filters(reason, source, since, until, topic)
    dlq_topic, letters, done, unreadable, erased = asyncio.run(dlq.dead_letters(connection(bootstrap), namespace,
                                                                                filters))
    replayed = {d.position for d in letters if is_replayed(done, dlq_topic, d.partition, d.offset, d.digest)}
    if not show_personal_data:
        letters = [replace(d, source=names_masked(d.source)) if d.source else d for d in letters]
    if as_json:
        for d in letters:
            row = {"dlq": d.position, **d.context.model_dump(mode="json"), "source": d.source,
                   "replayed": d.position in replayed,  # every problem, the one of an older letter too
                   "problems": [p.model_dump(mode="json") for p in d.context.all_problems()]}
            typer.echo(json_text(json.dumps(row, ensure_ascii=False)))
    else:
        console.print(dead_letter_table(letters, replayed))
    err_console.print(f"{counted(len(letters), 'dead letter')} in {markup(dlq_topic)} match, {len(replayed)} of them "
                      f"already replayed{_unreadable(unreadable, erased, filters)}")


def _unreadable(count: int, erased: int, filters: Filters) -> str:
    """What the counts leave out, said plainly: an erased dead letter is not an error, but it is not replayed. The
    erased are those matching the filters their clear headers tell (`dlq.Sifter`): a source is sealed, so with
    `--source` they are said to be of any source."""
    other = (f"; {count} unreadable, not listed (without intake's dlq.* headers, with a reason this CLI does not "
             "know, or sealed and not openable)") if count else ""
    anywhence = " (of any source: --source cannot be checked on them, sealed)" if filters.source is not None else ""
    return other + ((f"; {erased} erased or expired{anywhence}, unreadable: sealed under a key that is gone (its "
                     "applicant erased, or the day's key past the dead-letter retention), neither listed nor "
                     "replayable") if erased else "")


@app.command()
def replay(reason: ReasonOpt = None, source: SourceOpt = None, since: SinceOpt = None, until: UntilOpt = None,
           topic: TopicOpt = None,
           set_header: Annotated[list[str] | None, typer.Option("--set-header", help="K=V, repeatable: a fix "
                                 "applied on the way, e.g. commune-code=02269")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
           bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "") -> None:
    """Re-drive matching dead letters into their original raw topic (original key, value and headers, minus
    dlq.*, plus dlq.replayed=<partition:offset>). A dead letter is never replayed twice; duplicates
    (duplicate_event) only with --reason duplicate_event; erased or expired ones cannot be (counted, said). Those
    going back to a topic this principal may not write (a source's own raw topic, for the operator) are left as they
    are and named with the admin command that replays them, the others replayed: exit status 1 when some were left."""
    extra = _set_headers(set_header)
    filters = _filters(reason, source, since, until, topic)
    conn = connection(bootstrap)
    dlq_topic, letters, done, unreadable, erased = asyncio.run(dlq.dead_letters(conn, namespace, filters))
    fresh = [d for d in letters if not is_replayed(done, dlq_topic, d.partition, d.offset, d.digest)]
    todo = [d for d in fresh if replayable(d, filters)]
    duplicates = len(fresh) - len(todo)  # left out, not replayed: said apart from those already replayed
    todo, gone = asyncio.run(dlq.unerased(conn, namespace, todo))  # an applicant erased while the DLQ was read
    if gone:
        erased += len(gone)
        erased_meanwhile = {g.position for g in gone}
        letters = [d for d in letters if d.position not in erased_meanwhile]
    # asked of the broker (KIP-430), nothing written: the dry run tells the same split as the real run
    s = split(todo, asyncio.run(topic_rights(conn, {d.context.source_topic for d in todo})))
    if dry_run:
        unchecked = "" if s.checked else f"; {UNCHECKED}"
        left = (f"; {s.left_count} left to the admin: {why(s.left, s.missing)}: "
                f"{admin_command(filters, extra, namespace, s.left)}") if s.left else ""
        before = f"; {len(letters) - len(fresh)} already replayed" if len(letters) > len(fresh) else ""
        err_console.print(f"would replay {len(s.mine)} of {len(letters)} matching dead letters{before}"
                          f"{_duplicates(duplicates)}{_unreadable(unreadable, erased, filters)}{unchecked}{left}",
                          soft_wrap=True)
        return
    replayed = 0

    def advance(n: int) -> None:
        nonlocal replayed
        replayed += n
        bar.advance(task, n)

    def refused(topic: str, theirs: list[DeadLetter]) -> None:  # rights the broker could not tell beforehand
        s.left.setdefault(topic, []).extend(theirs)
        bar.update(task, total=len(s.mine) - s.left_count)

    with Progress(console=err_console) as bar:
        task = bar.add_task("replaying", total=len(s.mine))
        try:
            sent = asyncio.run(replaying.replay(conn, namespace, s.mine, dlq_topic, done, extra, advance, refused))
        except SendFailed as exc:  # that chunk's transaction was aborted: its letters stay unreplayed
            err_console.print(f"replay stopped after {replayed} of {len(s.mine)} dead letters: {markup(exc)}; "
                              "the rest are not marked replayed, run the command again once the cause is fixed"
                              f"{_left(s, filters, extra, namespace)}", soft_wrap=True)
            raise typer.Exit(1) from None
        except TopicAuthorizationFailedError as exc:
            err_console.print(f"replay stopped after {replayed} of {len(s.mine)} dead letters: "
                              f"{REFUSED.format(error=markup(exc))}{_left(s, filters, extra, namespace)}",
                              soft_wrap=True)
            raise typer.Exit(1) from None
        except Unacknowledged as exc:
            err_console.print(f"replay stopped: {markup(exc)}; {replaying.RUN_AGAIN}"
                              f"{_left(s, filters, extra, namespace)}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print(replaying.INTERRUPTED.format(replayed=replayed, todo=len(s.mine)), soft_wrap=True)
            raise typer.Exit(130) from None
    already = len(letters) - len(sent) - s.left_count - duplicates
    err_console.print(f"replayed {counted(len(sent), 'dead letter')}; {already} matching were already replayed"
                      f"{_duplicates(duplicates)}{_unreadable(unreadable, erased, filters)}"
                      f"{_left(s, filters, extra, namespace)}", soft_wrap=True)
    if s.left:  # a partial replay: the admin's run of the command said replays the rest
        raise typer.Exit(1)


def _duplicates(count: int) -> str:
    """Why duplicates are left out (`replayable`), and how to replay them: they were counted as already replayed."""
    return (f"; {counted(count, 'duplicate')} (duplicate_event) left out, not replayed: the source sent the event "
            "again and its first copy was published; one replayed past intake's 7-day de-duplication window would be "
            "published and notified a second time (give --reason duplicate_event to replay them)") if count else ""


def _left(s: Split, filters: Filters, extra: dict[str, str], namespace: str) -> str:
    return f"; {left_for_admin(s, filters, extra, namespace)}" if s.left else ""
