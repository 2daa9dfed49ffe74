"""The demo view's figures, from the services' Prometheus text: pure functions, no I/O.

A `Scrape` holds the counters' totals at one moment; `figures(older, newer)` turns two
of them into per-second rates (a counter that went down, a restarted service, counts
from zero again, never as a negative rate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from schemas.admin import commune_name
from schemas.events import Family

State = Literal["ready", "not ready", "no answer", "running", "exited"]


@dataclass(frozen=True)
class Health:
    state: State
    detail: str = ""


@dataclass(frozen=True)
class CommuneRate:
    commune: str
    province: str
    on_time: float
    completed: int

    @property
    def name(self) -> str:
        try:
            return commune_name(self.commune)
        except (KeyError, ValueError):
            return self.commune


@dataclass(frozen=True)
class Scrape:
    """Totals at `at` (monotonic seconds): per family (in, canonical, dead-lettered), per (channel, outcome)."""

    at: float
    families: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    notifications: Mapping[tuple[str, str], float] = field(default_factory=dict)
    communes: tuple[CommuneRate, ...] = ()
    health: Mapping[str, Health] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyRow:
    family: str
    in_per_s: float
    canonical_per_s: float
    dead_per_s: float
    in_total: float
    canonical_total: float
    dead_total: float


@dataclass(frozen=True)
class NotificationRow:
    channel: str
    outcome: str
    per_s: float
    total: float


@dataclass(frozen=True)
class Figures:
    """What the view shows, one moment."""

    families: tuple[FamilyRow, ...]
    notifications: tuple[NotificationRow, ...]
    lowest_on_time: tuple[CommuneRate, ...]
    health: tuple[tuple[str, Health], ...]
    window_s: float = 0.0
    clock: str = ""
    namespace: str = ""
    logs: str = ""


def samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def intake_totals(found: Iterable[Sample]) -> dict[str, tuple[float, float, float]]:
    """Per family: raw records consumed, canonical events published, records dead-lettered (over all reasons)."""
    column = {"commune_intake_records_in_total": 0, "commune_intake_records_out_total": 1,
              "commune_intake_records_rejected_total": 2}
    totals: dict[str, list[float]] = {}
    for s in found:
        if s.name in column and "family" in s.labels:
            totals.setdefault(s.labels["family"], [0.0, 0.0, 0.0])[column[s.name]] += s.value
    return {f: (t[0], t[1], t[2]) for f, t in totals.items()}


def notification_totals(found: Iterable[Sample]) -> dict[tuple[str, str], float]:
    """Notification attempts per (channel, outcome), over all event types."""
    totals: dict[tuple[str, str], float] = {}
    for s in found:
        if s.name == "notify_notifications_total":
            key = (s.labels.get("channel", "?"), s.labels.get("outcome", "?"))
            totals[key] = totals.get(key, 0.0) + s.value
    return totals


def commune_rates(found: Iterable[Sample]) -> tuple[CommuneRate, ...]:
    """Each commune's live on-time rate (completed on time or early / completed) with its completed count."""
    ratio: dict[tuple[str, str], float] = {}
    completed: dict[str, float] = {}
    for s in found:
        if s.name == "commune_dossiers_on_time_ratio":
            ratio[(s.labels.get("commune", "?"), s.labels.get("province", "?"))] = s.value
        elif s.name == "commune_dossiers_completed":
            commune = s.labels.get("commune", "?")
            completed[commune] = completed.get(commune, 0.0) + s.value
    return tuple(CommuneRate(c, p, r, int(completed.get(c, 0))) for (c, p), r in sorted(ratio.items()))


def _per_s(newer: float, older: float, window_s: float) -> float:
    if window_s <= 0:
        return 0.0
    return max(newer - older if newer >= older else newer, 0.0) / window_s


def figures(older: Scrape | None, newer: Scrape, *, lowest: int = 5, clock: str = "", namespace: str = "",
            logs: str = "") -> Figures:
    """The view's figures: rates over the window between `older` and `newer` (none yet without `older`)."""
    window = newer.at - older.at if older is not None else 0.0
    before = older or Scrape(at=newer.at)
    names = [f.value for f in Family] + sorted(set(newer.families) - {f.value for f in Family})
    rows = []
    for name in names:
        now, then = newer.families.get(name, (0.0, 0.0, 0.0)), before.families.get(name, (0.0, 0.0, 0.0))
        rates = [_per_s(n, t, window) for n, t in zip(now, then, strict=True)]
        rows.append(FamilyRow(name, rates[0], rates[1], rates[2], now[0], now[1], now[2]))
    notes = tuple(NotificationRow(channel, outcome, _per_s(total, before.notifications.get((channel, outcome), 0.0),
                                                           window), total)
                  for (channel, outcome), total in sorted(newer.notifications.items()))
    ranked = sorted((c for c in newer.communes if c.completed > 0), key=lambda c: (c.on_time, -c.completed, c.commune))
    return Figures(tuple(rows), notes, tuple(ranked[:lowest]), tuple(newer.health.items()), window, clock,
                   namespace, logs)
