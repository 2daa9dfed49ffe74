"""Terminal rendering of records and rejections (rich)."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from rich.console import Console, Group
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas import wire
from services.cli.deadletters import DeadLetter
from services.gateway.batch import RecordError


def record_panel(rec: ConsumerRecord[bytes, bytes]) -> Panel:
    headers = Table.grid(padding=(0, 2))
    for k, v in rec.headers:
        headers.add_row(Text(k, style="cyan" if k.startswith("ce_") else "magenta"), Text(wire.lenient_text(v)))
    value = rec.value or b""
    try:
        body: JSON | Text = JSON(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = Text(repr(value[:500]))
    title = f"{rec.topic} [{rec.partition}:{rec.offset}] key={(rec.key or b'').decode('utf-8', 'replace')}"
    return Panel(Group(headers, body), title=title, title_align="left")


def bad_record_line(source: str, index: int, problems: list[RecordError]) -> str:
    return f"{source}: record {index}: " + " | ".join(f"[{p.reason}] {p.message}" for p in problems)


def dead_letter_table(letters: list[DeadLetter], replayed: set[str]) -> Table:
    table = Table("dlq", "reason", "field", "source", "topic", "rejected at", "replayed")
    for d in letters:
        c = d.context
        table.add_row(d.position, c.reason.value, c.field, d.source or "", c.source_topic, c.rejected_at,
                      "yes" if d.position in replayed else "")
    return table


console = Console()
err_console = Console(stderr=True)
