"""The chaos table: one line per row, Jepsen-style counts of what was sent and what became of it."""

from __future__ import annotations

from collections.abc import Sequence

from tests.chaos.scenario import Row

HEADER = ("scenario", "sent", "lost", "duplicated", "out of order", "recovered (s)", "row (s)", "note")
LEGEND = """\
sent: intake raw records; notify notifications the rules ask for; metrics canonical events.
lost / duplicated: intake records not canonical nor dead-lettered / published or dead-lettered more than once
(read_committed); notify notifications no provider received / deliveries beyond the first per notification id
(acceptances per Idempotency-Key, a request answered as a replay delivers nothing and is counted in the note;
e-mails per Message-ID); metrics series below / above the independent oracle (tests/metrics/golden.py).
out of order: intake dossiers whose canonical events are not in the order sent; n/a where order does not apply.
recovered: from the blow (the storm's last move) until live workers own every partition and progress again.
A worker that exits unbidden is restarted, as the deployment's process manager would, and named in the note.
Runs the workers restarted in-process (each logs service.restarting, counted in the logs of every worker of the row,
killed ones too; commune_service_restarts_total, or commune_service_outage_restarts_total for a run ended while no
broker answered) are in the note; more than the row's bound (0 unless its fault ends
runs by design) fail it."""


def cells(row: Row) -> tuple[str, ...]:
    recovered = "-" if row.recovered_s is None else f"{row.recovered_s:.1f}"
    exits = f"; exited unbidden (restarted): {', '.join(row.exits)}" if row.exits else ""
    if row.counts is None:
        return (row.scenario, "-", "-", "-", "-", recovered, f"{row.seconds:.0f}", f"FAILED: {row.error}{exits}")
    c = row.counts
    order = "n/a" if c.out_of_order is None else str(c.out_of_order)
    ran_again = row.restarts_over or (f"{row.restarts} runs restarted in-process (bound {row.max_restarts})"
                                      if row.restarts else "")
    note = "; ".join(n for n in (c.note, ran_again) if n)
    return (row.scenario, str(c.sent), str(c.lost), str(c.duplicated), order, recovered, f"{row.seconds:.0f}",
            note + exits)


def render(rows: Sequence[Row]) -> str:
    """A plain-text table (Markdown-compatible), the header first."""
    lines = [HEADER, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = ["| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)
