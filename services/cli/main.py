"""`commune-bus`: the integrator's and operator's command line.

Offline: `validate`, `keys secret`. Against Kafka: `publish`, `tail`, `trace`, `dlq list|replay`,
`notify-dlq list|replay`, `topics create`, `erase`, `keys rewrap`.
Wrappers: `simulate` (services.simulator), `schemas export|asyncapi` (schemas.export, schemas.asyncapi).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from itertools import groupby
from pathlib import Path
from typing import Annotated

import orjson
import typer
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from rich.progress import Progress

from schemas.events import Family
from services.cli import dlq_commands, erase, kafka_io, notify_dlq, offline, options, simulate, trace
from services.cli.errors import CliError
from services.cli.lines import record_lines
from services.cli.options import DEFAULT_BOOTSTRAP, Bootstrap, Namespace, ShowPersonalData, connection, resolve_topic
from services.cli.plain import counted, markup
from services.cli.portal_records import commune_problem, family_problem, registry_entry, unowned_source
from services.cli.render import bad_record_line, console, err_console, record_panel
from services.cli.said import PRIVACY_HINT, clipped, kafka_hint, kafka_message
from services.common import logging
from services.common.admin import TopicLayoutError, ensure_topics, reconcile_configs
from services.common.refused import settings_checked
from services.common.topics_cli import DEFAULT_SOURCES, REPLICAS_KEPT, fewer_replicas, registry_topics
from services.gateway.batch import BodyError, TooManyRecords, split_body
from services.intake.portal import is_portal_shape
from services.privacy.crypto import PrivacyError
from services.sources.registry import RegistryFileError
from services.sources.topics import entry_of, raw_topic

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__,
                  pretty_exceptions_show_locals=False)  # a crash never prints erase's or publish's values
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the registry")
schemas_app = typer.Typer(no_args_is_help=True, help="Published contracts")
app.add_typer(dlq_commands.app, name="dlq")
app.add_typer(notify_dlq.app, name="notify-dlq")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.command("trace")(trace.trace)
app.add_typer(erase.keys_app, name="keys")
app.command("erase")(erase.erase)
app.command("simulate")(simulate.simulate)

FamilyOpt = Annotated[Family | None, typer.Option("--family", "-f", help="Default: each record's CloudEvents type")]


def _utf8(value: str | None) -> str | None:
    """An option's text as it goes into a header: one with a byte that is not UTF-8 (the shell's $'\\xff') was a
    traceback (UnicodeEncodeError, audit); now a usage error, exit 2."""
    if value is not None and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise typer.BadParameter("not valid UTF-8") from None
    return value


CommuneOpt = Annotated[str | None, typer.Option("--commune", callback=_utf8,
                                                help="Commune of portal-shape dossiers (commune-code)")]


def _records(file: Path) -> tuple[bytes, str, list[bytes]]:
    """FILE's bytes, the media type they are read as, and its records; a file that cannot be read: exit 2."""
    kind = "application/x-ndjson" if file.suffix.lower() in (".ndjson", ".jsonl") else "application/json"
    try:
        body = file.read_bytes()
        return body, kind, split_body(body, kind)
    except OSError as exc:  # missing, a directory, not readable: one line, not a traceback
        why = exc.strerror or type(exc).__name__
        err_console.print(f"{markup(file)}: cannot be read ({markup(why)})", soft_wrap=True)
        raise typer.Exit(2) from None
    except TooManyRecords as exc:  # it said "per request", the gateway's words: a file can be split (CLI trial)
        err_console.print(f"{markup(file)}: more than {exc.limit} records, the most a command takes: split it into "
                          f"files of at most {exc.limit} (NDJSON: split -l {exc.limit}) and give each in turn",
                          soft_wrap=True)
        raise typer.Exit(2) from None
    except BodyError as exc:
        err_console.print(f"{markup(file)}: {markup(str(exc).removeprefix('body '))}", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def validate(file: Path, family: FamilyOpt = None, commune: CommuneOpt = None) -> None:
    """Validate FILE offline (JSON object, JSON array or NDJSON) as intake would take it, under its INTAKE_* limits:
    one line per bad record, named by the line of FILE it begins on (blank lines counted); exit 0 only if all valid."""
    body, kind, records = _records(file)
    lines = record_lines(body, kind, records)  # "record 3" was the fourth non-blank line (CLI trial)
    checked = offline.verdict(records, lines, family=family, commune=commune)
    for index, problems in groupby(checked.errors, key=lambda e: e.index):
        typer.echo(bad_record_line(str(file), lines[index], list(problems)))
    bad = checked.rejected
    err_console.print(f"{counted(len(records), 'record')}, {len(records) - bad} valid, {bad} invalid")
    raise typer.Exit(1 if bad else 0)


@app.command()
def publish(file: Path, family: Annotated[Family, typer.Option("--family", "-f")],
            commune: CommuneOpt = None,
            source: Annotated[str | None, typer.Option(
                callback=_utf8,
                help="`source` header (portal shape); on a source's own topic one of its registry sources, needed "
                     "unless it owns the commune's portal sync, /communes/<commune>/portal-sync")] = None,
            entry: Annotated[str | None, typer.Option(
                help="Registry id whose own raw topic is written, commune.raw.<family>.src.<id> (ADR 0018); by "
                     "default that of a `source-<id>` Kafka user, else the shared raw topic. Only that source's "
                     "principal (or the admin) may write it")] = None,
            bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "") -> None:
    """Publish FILE's records as they are to the family's RAW topic (intake validates them), keyed by commune: a
    source's principal writes its own topic (the only raw topic it may write), the gateway's and the operator's the
    shared one. A record that is not JSON is published as it is too (keyed by --commune), and counted: intake
    dead-letters it (not_json)."""
    _, _, records = _records(file)
    commune, source = commune or None, source or None  # an empty one is no header, as intake reads it
    headers = [(k, v.encode()) for k, v in (("commune-code", commune), ("source", source)) if v]
    out: list[kafka_io.Record] = []
    not_json = 0
    portal_shape = False
    for value in records:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:  # published as it is, counted below
            obj, not_json = None, not_json + 1
        portal_shape |= family is Family.DOSSIER and isinstance(obj, dict) and is_portal_shape(obj)
        key = obj.get("commune") if isinstance(obj, dict) and isinstance(obj.get("commune"), str) else commune
        out.append((key.encode() if key else None, value, headers))
    conn = connection(bootstrap)
    bound = entry or entry_of(conn.sasl_username)
    topic = raw_topic(family, bound, namespace)
    listed = registry_entry(DEFAULT_SOURCES, bound) if bound else None
    owner = listed if portal_shape else None
    why = family_problem(listed, family) or (commune_problem(commune) if portal_shape else None) or (
        owner and unowned_source(owner, commune, source))
    if why:  # they would all be dead letters
        err_console.print(f"publish: {markup(why)}; nothing was published", soft_wrap=True)
        raise typer.Exit(2)
    asyncio.run(kafka_io.visible(conn, topic))  # before the progress bar: a topic not there is said alone
    with Progress(*Progress.get_default_columns(), console=err_console) as bar:
        task = bar.add_task(f"publishing to {markup(topic)}", total=len(out))
        try:
            sent = asyncio.run(kafka_io.publish(conn, topic, out, lambda n: bar.advance(task, n)))
        except KeyboardInterrupt:  # Ctrl-C: it ended with no word of what was written (CLI trial)
            err_console.print(f"interrupted: {bar.tasks[0].completed:.0f} of {len(out)} records acknowledged by "
                              f"{markup(topic)}, the others perhaps written (intake publishes each event id once: "
                              "publish the file again)", soft_wrap=True)
            raise typer.Exit(130) from None
    unreadable = f" ({not_json} not JSON: intake dead-letters them as not_json)" if not_json else ""
    err_console.print(f"{counted(sent, 'record')} acknowledged by {markup(topic)}{unreadable}")

IDLE_MAX_S = 365 * 86_400.0
"""`--idle` at most a year: `nan` and `inf` followed the topic for ever, as a negative one showed nothing, exit 0."""


@app.command()
def tail(topic: str, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "",
         from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
         limit: Annotated[int | None, typer.Option("--max", min=0, help="Stop after this many records")] = None,
         idle: Annotated[float | None, typer.Option(min=0, max=IDLE_MAX_S, help="Stop after this many quiet seconds")
                         ] = None,
         since: options.Since = None,
         show_personal_data: ShowPersonalData = False) -> None:
    """Follow TOPIC (committed records) and pretty-print each: key, CloudEvents headers, JSON value. Everything a
    record holds is shown as plain text (control characters as escapes); applicants' personal data is masked."""
    if since is not None and from_beginning:
        raise typer.BadParameter("give --since or --from-beginning, not both", param_hint="--since")
    since_ms = options.since_option(since)
    name = resolve_topic(topic, namespace)
    seen = 0

    def show(rec: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal seen
        console.print(record_panel(rec, show_personal_data))
        seen += 1

    try:
        asyncio.run(kafka_io.tail(connection(bootstrap), name, from_beginning, limit, idle, show, since_ms))
    except TopicAuthorizationFailedError as exc:  # a name it may not describe: perhaps a mistyped one
        raise options.misspelt(name, namespace) or exc from None
    except KeyboardInterrupt:  # Ctrl-C: what was shown is said all the same; 130 as every command here (typer's)
        err_console.print(f"{counted(seen, 'record')} from {markup(name)} (interrupted)")
        raise typer.Exit(130) from None
    err_console.print(f"{counted(seen, 'record')} from {markup(name)}")


@topics_app.command("create")
def topics_create(bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "",
                  replication_factor: Annotated[int | None, typer.Option(
                      min=1, help="Replicas per topic (default: the cluster's default.replication.factor)")] = None,
                  sources: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Source registry: "
                      "each source's bound raw topics are created too [default: infra/sources.yaml if there]")] = None,
                  ) -> None:
    """Create every registry topic that is missing (partitions and config from schemas.topics), and the raw topics
    bound to each source of the source registry, and give the existing ones the registry's config: each key changed
    is printed with its value before. Keys the registry does not name (set by hand) are kept. Needs the admin
    principal (CreateTopics, AlterConfigs); run it after each upgrade and after adding a source."""
    specs = registry_topics(namespace, sources)
    conn = connection(bootstrap)
    for drift in asyncio.run(reconcile_configs(conn, specs)):  # first: the check of ensure_topics then passes
        console.print(f"{markup(drift.topic)}: {markup(drift.key)} {markup(drift.actual)} -> {markup(drift.wanted)}",
                      soft_wrap=True)
    created = asyncio.run(ensure_topics(conn, specs, replication_factor))
    console.print(f"{counted(len(created), 'topic')} created on {markup(bootstrap)}"
                  + (f": {markup(', '.join(created))}" if created else ""))
    if replication_factor and (fewer := asyncio.run(fewer_replicas(conn, specs, replication_factor))):
        err_console.print(f"warning: {markup('; '.join(fewer))}: {REPLICAS_KEPT}", soft_wrap=True)


@schemas_app.command("export", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def schemas_export(ctx: typer.Context) -> None:
    """Write the JSON Schemas per event type (python -m schemas.export; extra arguments are passed on)."""
    raise typer.Exit(subprocess.call([sys.executable, "-m", "schemas.export", *ctx.args]))


@schemas_app.command("asyncapi")
def schemas_asyncapi(
        check: Annotated[bool, typer.Option("--check", help="Fail if the committed file is stale")] = False) -> None:
    """Write (or check) the AsyncAPI 3.0 document schemas/asyncapi.yaml."""
    raise typer.Exit(subprocess.call([sys.executable, "-m", "schemas.asyncapi", *(["--check"] if check else [])]))


def main() -> None:
    """The `commune-bus` command: `app`, with what an operator meets every day (no broker, no rights on a topic, no
    keys, a topic unlike the registry) said in one line and an exit status, never as a traceback of the client's
    internals."""
    # standard output is the command's answer (`--json` lines): the library's log lines go to standard error, from
    # WARNING (`COMMUNE_BUS_LOG_LEVEL`); unconfigured, structlog printed them on standard output (CI: `dlq list
    # --json` began with the key store's `privacy.keys_read` line)
    logging.configure(os.environ.get("COMMUNE_BUS_LOG_LEVEL", "WARNING"), cache=False)
    try:
        with settings_checked("commune-bus"):
            app()
    except KafkaError as exc:
        err_console.print(f"commune-bus: Kafka: {markup(kafka_message(exc))} ({kafka_hint(exc)})", soft_wrap=True)
        raise SystemExit(1) from None
    except PrivacyError as exc:
        err_console.print(f"commune-bus: {markup(clipped(str(exc)))} ({PRIVACY_HINT})", soft_wrap=True)
        raise SystemExit(2) from None
    except TopicLayoutError as exc:  # a topic laid out or configured unlike the registry: the message says the fix
        err_console.print(f"commune-bus: {markup(exc)}", soft_wrap=True)
        raise SystemExit(1) from None
    except (CliError, RegistryFileError) as exc:  # a topic not visible to this principal, a registry file unlike
        # one: the message says what to check
        err_console.print(f"commune-bus: {markup(exc)}", soft_wrap=True)
        raise SystemExit(1) from None
    except OSError as exc:  # a file the settings name (KAFKA_SSL_CAFILE, ...) is not there: it was a traceback
        if exc.filename is None:
            raise
        why = exc.strerror or type(exc).__name__
        err_console.print(f"commune-bus: cannot read {markup(exc.filename)}: {markup(why)} (check the KAFKA_SSL_* "
                          "files)", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
