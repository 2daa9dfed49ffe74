"""Per-commune totals as the sum of what each entity's current state contributes.

An entity's state changing from `old` to `new` subtracts `contributions(old)` and
adds `contributions(new)`; the totals are therefore a pure function of the set
of current entity states, whatever order the events came in (see `state`).

Counting follows DOMAIN.md: received = any status except 1 and 3 (sticky),
open = 2, 4, 5, 6, completed = 9, 10; an open dossier past its due date is
overdue, from the end of its due day in Vietnam (`schemas.times.overdue_from_s`:
timeliness compares calendar days), decided at read time, against the clock.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from schemas.times import overdue_from_s
from services.metrics.state import AnnouncementState, DossierState, SupportState, TrainingState, VisitState

Key = tuple[str, ...]
Contribution = tuple[Key, int]
EntityState = DossierState | VisitState | TrainingState | SupportState | AnnouncementState

OPEN = frozenset({2, 4, 5, 6})
DURATION_BUCKETS_S: tuple[float, ...] = (3600, 4 * 3600, 86400, 2 * 86400, 3 * 86400, 5 * 86400, 7 * 86400,
                                         10 * 86400, 15 * 86400, 30 * 86400)
DELAY_BUCKETS_S: tuple[float, ...] = (0, 60, 300, 900, 1800, 3600, 3 * 3600, 86400)


def bucket(bounds: tuple[float, ...], value: float) -> str:
    """Index (as text) of the first bucket whose upper bound is >= value; len(bounds) is +Inf."""
    return str(bisect_left(bounds, value))


def dossier_contributions(s: DossierState) -> list[Contribution]:
    out: list[Contribution] = []
    if s.received:
        out.append((("received", s.channel), 1))
        if s.paid_online and s.has_fees:  # the index's rate is paid online / with fees: a fee-less one is neither
            out.append((("paid_online",), 1))
        if s.has_fees:
            out.append((("with_fees",), 1))
        if s.digitised:
            out.append((("digitised",), 1))
    if s.status in OPEN:
        out.append((("open",), 1))
    if s.completed_at is not None:
        out.append((("completed", s.channel, s.timeliness or "unknown"), 1))
        if s.duration_s is not None:
            out.append((("duration", bucket(DURATION_BUCKETS_S, s.duration_s)), 1))
            out.append((("duration_sum",), s.duration_s))
    return out


def visit_contributions(s: VisitState) -> list[Contribution]:
    if s.rank < 2:
        return []
    return [(("visits",), 1), (("households",), s.households), (("people",), s.people),
            (("visit_dossiers",), s.dossiers), (("accounts",), s.accounts)]


def training_contributions(s: TrainingState) -> list[Contribution]:
    return [(("trainings",), 1), (("attendees",), s.attendees)]


def support_contributions(s: SupportState) -> list[Contribution]:
    return [(("support", s.channel), 1)]


def announcement_contributions(s: AnnouncementState) -> list[Contribution]:
    out: list[Contribution] = []
    if s.scheduled_at is not None:
        out.append((("scheduled", s.category), 1))
    for cluster in s.clusters.values():
        if cluster.outcome != "started":
            out.append((("broadcast", s.category, cluster.outcome), 1))
        if s.starts_s is not None and cluster.started_s is not None:
            delay = max(0, cluster.started_s - s.starts_s)
            out.append((("delay", bucket(DELAY_BUCKETS_S, delay)), 1))
            out.append((("delay_sum",), delay))
    return out


def contributions(state: EntityState) -> list[Contribution]:
    if isinstance(state, DossierState):
        return dossier_contributions(state)
    if isinstance(state, VisitState):
        return visit_contributions(state)
    if isinstance(state, TrainingState):
        return training_contributions(state)
    if isinstance(state, SupportState):
        return support_contributions(state)
    return announcement_contributions(state)


def latest_micros(state: EntityState) -> int:
    """The time of the entity's newest event, whatever the order its events came in: a broadcast or a visit's start
    later than the end the state keeps counts too (`broadcast_at`, `newest_at`)."""
    if isinstance(state, AnnouncementState):
        times = [c.at for c in state.clusters.values()]
        times += [t for t in (state.scheduled_at, state.broadcast_at) if t is not None]
        return max(times, default=0)
    if isinstance(state, VisitState) and state.newest_at is not None:
        return state.newest_at
    return state.at


def _open_due(state: EntityState | None) -> int | None:
    """When an open dossier becomes overdue (epoch s: the end of its due day, `overdue_from_s`), else None."""
    if isinstance(state, DossierState) and state.status in OPEN and state.due_s is not None:
        return overdue_from_s(state.due_s)
    return None


@dataclass
class CommuneTotals:
    """One commune's figures. `due` counts open dossiers by when they become overdue (epoch s, `_open_due`) for the
    overdue gauge.

    `last_event_us` is the newest believable event time (the sender's clock); `last_received_ms` when the backbone
    received the newest event that changed a state of the commune (its canonical record's timestamp: when intake
    published it), whatever that event's own time says (a backlog of old events, a clock set wrong)."""

    province: str
    counts: dict[Key, int] = field(default_factory=dict)
    due: dict[int, int] = field(default_factory=dict)
    last_event_us: int = 0
    last_received_ms: int = 0
    _version: int = 0
    _overdue_cache: tuple[int, float, float, int] = (-1, 0.0, 0.0, 0)  # version, valid for now in [a, b), value

    def replace(self, old: EntityState | None, new: EntityState) -> None:
        counts = self.counts
        added = contributions(new)
        removed = contributions(old) if old is not None else []
        if removed != added:  # most changes move no count (accepted -> in progress, processed -> returned)
            for key, amount in removed:
                counts[key] = counts.get(key, 0) - amount
            for key, amount in added:
                counts[key] = counts.get(key, 0) + amount
        if type(new) is DossierState:
            was, now = _open_due(old), _open_due(new)
            if was != now:  # the overdue cache stays valid while open dossiers keep their due dates
                if was is not None:
                    self._count_due(was, -1)
                if now is not None:
                    self._count_due(now, 1)
                self._version += 1
        at = new.at if type(new) is DossierState else latest_micros(new)
        if at > self.last_event_us:
            self.last_event_us = at

    def mark_received(self, at_ms: int) -> None:
        """A change of one of the commune's states arrived at `at_ms` (epoch ms)."""
        if at_ms > self.last_received_ms:
            self.last_received_ms = at_ms

    def _count_due(self, due_s: int, sign: int) -> None:
        n = self.due.get(due_s, 0) + sign
        if n:
            self.due[due_s] = n
        else:
            del self.due[due_s]

    def get(self, *key: str) -> int:
        return self.counts.get(key, 0)

    def overdue(self, now_s: float) -> int:
        """Open dossiers overdue at `now_s`: their due day is over (cached until the next one's is)."""
        version, since, until, value = self._overdue_cache
        if version == self._version and since <= now_s < until:
            return value
        value, since, until = 0, float("-inf"), float("inf")
        for start, n in self.due.items():
            if start <= now_s:
                value += n
                since = max(since, start)
            elif start < until:
                until = start
        self._overdue_cache = (self._version, since, until, value)
        return value
