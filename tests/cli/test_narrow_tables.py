"""`trace` and `dlq list` on a terminal of 80 columns (the default, and rich's width for a pipe or a file) show every
cell whole, wrapped onto more lines: they cut ids, places and reasons with an ellipsis (`tl-2025-0001…`), so that two
events of one dossier could not be told apart (CLI trial)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from schemas.deadletter import DeadLetterContext, Reason
from services.cli.deadletters import DeadLetter
from services.cli.render import dead_letter_table
from services.cli.trace import table
from services.cli.tracer import Step

pytestmark = pytest.mark.unit


def shown(rendered: Table) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(rendered)
    return console.export_text()


def column(text: str, index: int) -> str:
    """Column `index` of a rendered table, its lines joined without their spaces: what its cells, wrapped or folded
    over lines, still spell."""
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    return "".join(row[index + 1].strip() for row in rows)


def test_a_trace_at_80_columns_shows_every_event_id_whole() -> None:
    """Two events whose ids differ only at their end: both ids, the places and the trace ids are all there."""
    steps = [Step(1_764_576_000_000 + n, "canonical", f"commune.events.dossier/1/{10 + n}",
                  f"vn.communebus.dossier.status-changed.v1 id tl-2025-000123-{10 + n} subject TL-251103-0007",
                  f"{n}" * 32) for n in (1, 2)]
    text = shown(table(steps))
    assert "…" not in text
    for n in (1, 2):
        assert f"tl-2025-000123-{10 + n}" in column(text, 3)
        assert f"commune.events.dossier/1/{10 + n}" in column(text, 2)
        assert f"{n}" * 32 in column(text, 4)


@pytest.mark.parametrize("at_ms", [-2, -10**14, -2**62, 2**62])
def test_a_step_at_any_time_a_producer_can_stamp_is_shown(at_ms: int) -> None:
    """A raw topic left at CreateTime keeps any 64-bit time a producer sends (measured on the broker): the trace
    shows the step, its time as a date where there is one, else as the number (a ValueError ended it)."""
    text = shown(table([Step(at_ms, "raw", "commune.raw.dossier/0/7", "received from /communes/02269/one-stop")]))
    assert "commune.raw.dossier/0/7" in column(text, 2)
    assert ("1969-12-31" if at_ms == -2 else f"{at_ms}ms") in column(text, 0).replace(" ", "")


def test_dead_letters_at_80_columns_show_every_reason_and_topic_whole() -> None:
    """A dead letter's reason and original topic are not cut (they were `missing_…`, `commune.…`)."""
    context = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field="commune-code", message="m",
                                source_topic="commune.raw.dossier.src.thuong-lam-one-stop", source_partition=1,
                                source_offset=4, rejected_at="2026-12-05T03:09:16.174419+00:00")
    letter = DeadLetter(1, 2, None, None, [], context, "/communes/02269/one-stop", "0" * 32)
    text = shown(dead_letter_table([letter], set()))
    assert "…" not in text
    assert "missing_commune_header" in column(text, 1)
    assert "commune.raw.dossier.src.thuong-lam-one-stop" in column(text, 4)


def test_dead_letters_name_what_trace_finds_them_by() -> None:
    """`dlq list` showed no lookup names (ADR 0038; the walkthrough's left-alone): the operator, who may not read the
    raw topics, had no name to give `trace` but the `--json` lines'. The dossier code, subject and id, each once."""
    context = DeadLetterContext(reason=Reason.INVALID_FIELD, field="data.status", message="m",
                                source_topic="commune.raw.dossier", source_partition=1, source_offset=4,
                                rejected_at="2026-12-05T03:09:16.174419+00:00", lookup_id="evt-7",
                                lookup_subject="TL-251103-0007", lookup_trace="ab" * 16)
    named = DeadLetter(1, 2, None, None, [], context, "/communes/02269/one-stop", "0" * 32)
    bare = DeadLetter(1, 3, None, None, [], context.model_copy(update={"lookup_id": None, "lookup_subject": None,
                                                                         "lookup_trace": None}), None, "1" * 32)
    text = shown(dead_letter_table([named, bare], set()))
    assert column(text, 7) == "TL-251103-0007evt-7" and "…" not in text
