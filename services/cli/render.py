"""Terminal rendering of records and rejections (rich). Record content goes through `services.cli.plain`."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord
from rich.console import Console, Group
from rich.highlighter import JSONHighlighter
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas.deadletter import MAX_PROBLEMS, DeadLetterContext
from services.cli.deadletters import DeadLetter
from services.cli.masking import masked, shown_header, shown_key
from services.cli.plain import decoded, json_text, text, visible
from services.gateway.batch import RecordError

SHOWN_BYTES = 500
"""Of a value that is not JSON, the first bytes shown."""


def record_panel(rec: ConsumerRecord[bytes, bytes], show_personal_data: bool = False) -> Panel:
    """One record: key, headers and value, every one of them as plain text. Unless `show_personal_data`, only what
    identifies nobody: a key or header value of a closed shape (a commune code, a known event type, a time...), any
    other as its length (`masking.shown_key`, `shown_header`); a JSON value with applicants' personal data and long
    numbers masked (`masking.masked`); a value that is not JSON, which cannot be masked, as its length."""
    headers = Table.grid(padding=(0, 2))
    for k, v in rec.headers:
        name, value = (k, decoded(v)) if show_personal_data else shown_header(k, v)
        headers.add_row(text(name, style="cyan" if k.startswith("ce_") else "magenta"), text(value))
    key = decoded(rec.key) if show_personal_data else shown_key(rec.key)
    title = text(f"{rec.topic} [{rec.partition}:{rec.offset}] key={key}")
    return Panel(Group(headers, _value(rec.value, show_personal_data)), title=title, title_align="left")


def _value(value: bytes | None, show_personal_data: bool) -> Text:
    if value is None:
        return Text("(no value: a tombstone)", style="dim")
    try:
        obj = orjson.loads(value)
        shown = orjson.dumps(obj if show_personal_data else masked(obj), option=orjson.OPT_INDENT_2).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or nested past what orjson writes
        if not show_personal_data:
            return Text(f"({len(value)} bytes, not JSON: not shown, as personal data in it could not be masked; "
                        "--show-personal-data shows it)", style="dim")
        return Text(f"({len(value)} bytes, not readable as JSON) ", style="dim") + text(decoded(value[:SHOWN_BYTES]))
    return JSONHighlighter()(Text(json_text(shown)))


def bad_record_line(source: str, line: int, problems: list[RecordError]) -> str:
    """`source: line N: [reason] message | ...`: a bad record by the line of the file it begins on."""
    return visible(f"{source}: line {line}: " + " | ".join(f"[{p.reason}] {p.message}" for p in problems))


def folded_table(*headers: str) -> Table:
    """A table whose cells, when the terminal is narrow, wrap onto more lines, a long word folded, instead of being
    cut with an ellipsis: at 80 columns (a terminal's default, and rich's width for a pipe or a file) `trace` showed
    every event id as `tl-2025-0001…` and every place as `commune.event…`, `dlq list` every reason as `missing_…`
    (CLI trial)."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def dead_letter_table(letters: list[DeadLetter], replayed: set[str]) -> Table:
    """One row a dead letter, its reason and field one line a problem (`dlq.problems`); "trace by": its lookup names
    (ADR 0038), the dossier code, subject and event id that `commune-bus trace` finds it by (the trace id is in
    `--json`)."""
    table = folded_table("dlq", "reason", "field", "source", "topic", "rejected at", "replayed", "trace by")
    for d in letters:
        c = d.context
        names = " ".join(dict.fromkeys(n for n in (c.lookup_dossier, c.lookup_subject, c.lookup_id) if n))
        reasons, fields = problem_cells(c)
        table.add_row(text(d.position), reasons, fields, *(text(cell) for cell in (
            d.source or "", c.source_topic, c.rejected_at, "yes" if d.position in replayed else "", names)))
    return table


def problem_cells(context: DeadLetterContext) -> tuple[Text, Text]:
    """The reasons and the fields of a dead letter's problems, one line each (each line as plain text); the entry
    counting those not listed (past `MAX_PROBLEMS`) by its message. One with a problem, or written before
    `dlq.problems`: its reason and field."""
    problems = context.all_problems()
    return (Text("\n").join(text(p.reason.value) for p in problems),
            Text("\n").join(text(p.message if i == MAX_PROBLEMS else p.field) for i, p in enumerate(problems)))


console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
"""Without emoji codes: `:thumbs_up:` in a record stays text (`plain.markup` escapes markup only)."""
