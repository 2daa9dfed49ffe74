"""The demo's terminal view: pure functions from `Figures` to a rich renderable, or to one summary line."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.demo.figures import Figures, Health

STYLE = {"ready": "green", "running": "green", "not ready": "yellow", "no answer": "yellow", "exited": "bold red"}


def _rate(value: float) -> str:
    return f"{value:,.1f}/s"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _families(f: Figures) -> Table:
    table = Table(title="Records per family (intake; dead = dead-lettered)", title_justify="left")
    table.add_column("family", no_wrap=True)
    for name in ("in", "canonical", "dead", "total in", "total dead"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in f.families:
        table.add_row(r.family, _rate(r.in_per_s), _rate(r.canonical_per_s),
                      Text(_rate(r.dead_per_s), style="red" if r.dead_per_s > 0 else ""),
                      _count(r.in_total), _count(r.dead_total))
    return table


def _notifications(f: Figures) -> Table:
    table = Table(title="Notifications by channel and outcome", title_justify="left")
    for name in ("channel", "outcome", "rate", "total"):
        table.add_column(name, justify="right" if name in ("rate", "total") else "left")
    for n in f.notifications:
        table.add_row(n.channel, n.outcome, _rate(n.per_s), _count(n.total))
    if not f.notifications:
        table.add_row("-", "none yet", "", "")
    return table


def _communes(f: Figures) -> Table:
    table = Table(title=f"Lowest on-time rate ({len(f.lowest_on_time)} communes)", title_justify="left")
    for name in ("commune", "province", "on time", "completed"):
        table.add_column(name, justify="right" if name in ("on time", "completed") else "left")
    for c in f.lowest_on_time:
        table.add_row(f"{c.commune} {c.name}", c.province, f"{c.on_time:.0%}", _count(c.completed))
    if not f.lowest_on_time:
        table.add_row("-", "", "no completed dossier yet", "")
    return table


def _health(f: Figures) -> Table:
    table = Table(title="Processes (/readyz)", title_justify="left")
    for name in ("process", "state", "detail"):
        table.add_column(name)
    for name, h in f.health:
        table.add_row(name, Text(h.state, style=STYLE.get(h.state, "")), h.detail)
    return table


def render(f: Figures) -> RenderableType:
    """The whole view: header, the four tables, and where the logs are."""
    scope = f" · namespace {f.namespace}" if f.namespace else ""
    window = f" · rates over {f.window_s:.0f} s" if f.window_s > 0 else " · rates after the next scrape"
    header = Text(f"commune-bus demo {f.clock}{scope}{window}", style="bold")
    top = Table.grid(padding=(0, 2))
    top.add_row(_families(f), _health(f))
    bottom = Table.grid(padding=(0, 2))
    bottom.add_row(_notifications(f), _communes(f))
    footer = Text(f"logs: {f.logs}/<process>.log · Ctrl-C stops every process (the broker keeps running)",
                  style="dim")
    return Group(header, top, bottom, footer)


def summary(f: Figures) -> str:
    """One line for a log or a pipe: totals per second, notifications, the lowest commune, readiness."""
    rate = sum(r.in_per_s for r in f.families), sum(r.canonical_per_s for r in f.families)
    dead = sum(r.dead_per_s for r in f.families)
    by_outcome: dict[str, float] = {}
    for n in f.notifications:
        by_outcome[n.outcome] = by_outcome.get(n.outcome, 0.0) + n.total
    notes = " ".join(f"{o}={v:,.0f}" for o, v in sorted(by_outcome.items())) or "none"
    low = f.lowest_on_time[0] if f.lowest_on_time else None
    lowest = f"{low.commune} {low.on_time:.0%}" if low else "-"
    ready = [name for name, h in f.health if _up(h)]
    waiting = ", ".join(f"{name}: {h.state}" for name, h in f.health if not _up(h))
    up = f"up {len(ready)}/{len(f.health)}" + (f" ({waiting})" if waiting else "")
    return (f"demo {f.clock} in {_rate(rate[0])} canonical {_rate(rate[1])} dead {_rate(dead)} | notifications "
            f"{notes} | lowest on-time {lowest} | {up}")


def _up(h: Health) -> bool:
    return h.state in ("ready", "running")
