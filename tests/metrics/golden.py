"""A fixed event set with out-of-order and duplicated events, and its expected figures computed independently.

The oracle below reads the event list directly (newest event per dossier by
time, then stage at the same time, then due date, then id; OR of sticky facts, calendar-day
comparison in Vietnam time) and shares no code with the service.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from schemas.dossier import DossierStatusChanged
from schemas.envelope import Event
from schemas.mobile_team import TrainingHeldEvent, VisitCompletedEvent
from tests.metrics.events import T0, broadcast, dossier, scheduled, visit_completed

COMMUNES = ["02269", "00691", "00694", "05977", "05983", "05986", "00700", "06001"]
VN = timezone(timedelta(hours=7))
NOW = T0.timestamp() + 5 * 86400  # day 5: dossiers due on day 3 are overdue, those due on day 8 are not
Sample = tuple[str, tuple[tuple[str, str], ...]]


def _paths(rng: random.Random, commune: str, code: str, base: int) -> list[Event]:
    """One dossier's events along a randomly chosen path."""
    kind = rng.choice(["early", "on_time", "late", "open", "open_due_later", "rejected", "registered", "returned",
                       "reopened", "flags_early", "withdrawn_same_time"])
    channel = rng.choice(["counter", "online", "postal", "mobile_team"])
    fees = rng.random() < 0.5
    paid = fees and rng.random() < 0.6
    digitised = rng.random() < 0.4
    due_days = 8 if kind == "open_due_later" else 3
    common: dict[str, Any] = {"channel": channel, "fees": fees, "due_days": due_days}
    ev: list[Event] = [dossier(commune, code, 1, f"{code}-e1", 0, **common)]
    if kind == "rejected":
        return [*ev, dossier(commune, code, 3, f"{code}-e3", 1, **common)]
    if kind == "registered":
        return ev
    if kind == "flags_early":  # fees and digitised said on an older event only: both stay (sticky)
        return [*ev, dossier(commune, code, 2, f"{code}-e2", 1, channel=channel, fees=True, digitised=True),
                dossier(commune, code, 4, f"{code}-e4", 2, channel=channel),
                dossier(commune, code, 9, f"{code}-e9", 30, end_hours=30, channel=channel)]
    ev.append(dossier(commune, code, 2, f"{code}-e2", 1, **common))
    ev.append(dossier(commune, code, 4, f"{code}-e4", 2, paid_online=paid, **common))
    if kind == "withdrawn_same_time":  # no date of its own: the in-progress event's time, an id sorting before it
        return [*ev, dossier(commune, code, 7, f"{code}-a7", 2, **common)]
    if kind == "reopened":  # processed, then sent back for a supplement: open again, and still completed once
        return [*ev, dossier(commune, code, 9, f"{code}-e9", 50, end_hours=50, paid_online=paid, **common),
                dossier(commune, code, 5, f"{code}-e5", 60, paid_online=paid, **common)]
    end = {"early": 30, "on_time": 72 + 2, "late": 72 + 30, "returned": 50}.get(kind)
    if end is not None:
        ev.append(dossier(commune, code, 9, f"{code}-e9", end, end_hours=end, paid_online=paid, digitised=digitised,
                          **common))
        if kind == "returned":
            ev.append(dossier(commune, code, 10, f"{code}-e10", end + 5, end_hours=end, paid_online=paid,
                              digitised=digitised, **common))
    elif digitised:
        ev.append(dossier(commune, code, 5, f"{code}-e5", 3, paid_online=paid, digitised=True, **common))
    return ev


def event_set(seed: int = 20251103) -> list[Event]:
    """Per commune: 12 dossiers, 2 visits, 1 announcement; then 25% re-sent, all shuffled."""
    rng = random.Random(seed)
    events: list[Event] = []
    for i, c in enumerate(COMMUNES):
        for n in range(12):
            events += _paths(rng, c, f"{c}-HS-{n:03d}", i)
        events.append(visit_completed(c, f"{c}-V1", f"{c}-v1", 10, 20 + i, 30 + i, 4, 3))
        events.append(visit_completed(c, f"{c}-V2", f"{c}-v2", 12, 5, 6, 1, 0))
        events.append(scheduled(c, f"{c}-A1", f"{c}-a1", 0, starts_hours=1))
        events.append(broadcast(c, f"{c}-A1", "C1", "failed", f"{c}-b1", 1.5))
        events.append(broadcast(c, f"{c}-A1", "C1", "completed", f"{c}-b2", 2.5, started_hours=2))
        events.append(broadcast(c, f"{c}-A1", "C2", "completed", f"{c}-b3", 1.5, started_hours=1))
    events += rng.sample(events, len(events) // 4)  # duplicates: same id, same content
    rng.shuffle(events)  # out of order within each commune's partition
    return events


def past_due(due_at: datetime, now: float) -> bool:
    """DOMAIN: an open dossier past its due date is overdue; it is on time all its due day (Vietnam time), as
    timeliness compares days, whatever time of day the due date carries."""
    return datetime.fromtimestamp(now, VN).date() > due_at.astimezone(VN).date()


def _stage(status: int) -> int:
    """DOMAIN's lifecycle: registered (1) before open (2, 4, 5, 6) before ended (3, 7, 8, 9, 10)."""
    return 0 if status == 1 else 1 if status in (2, 4, 5, 6) else 2


def _due_s(e: DossierStatusChanged) -> int:
    """Within a stage the later due date is the newer state (a request for more documents moves it later)."""
    return -1 if e.data.due_at is None else int(e.data.due_at.timestamp())


def _everything(_: Event) -> bool:
    return True


def expected(events: list[Event], now: float = NOW, believed: Callable[[Event], bool] = _everything
             ) -> dict[Sample, float]:
    """The figures the service must export, from the events alone. `believed`: whether an event's time is believed
    (ADR 0006: not when it is more than an hour ahead of its record's timestamp); an event whose time is not ranks
    before every believed one of its entity, and such events keep the order of their times among themselves."""
    out: dict[Sample, float] = defaultdict(float)
    unique = {e.id: e for e in events}.values()
    dossiers: dict[tuple[str, str], list[DossierStatusChanged]] = defaultdict(list)
    for e in unique:
        if isinstance(e, DossierStatusChanged):
            dossiers[(e.commune, e.data.dossier_code)].append(e)
    for (commune, _), evs in dossiers.items():
        where = (("province", evs[0].province), ("commune", commune))
        latest = max(evs, key=lambda e: (believed(e), e.time, _stage(int(e.data.status)), _due_s(e), e.id))
        received = [e for e in evs if int(e.data.status) not in (1, 3)]
        completed = [e for e in evs if int(e.data.status) in (9, 10)]
        if received:
            out[("commune_dossiers_received", (*where, ("channel", latest.data.channel.value)))] += 1
            fees = any(f.amount_vnd > 0 for e in evs for f in e.data.fees)
            # DOMAIN's index: paid online / dossiers with fees, so a dossier without fees is neither
            out[("commune_dossiers_with_fees", where)] += fees
            out[("commune_dossiers_paid_online", where)] += fees and any(e.data.paid_online for e in evs)
            out[("commune_dossiers_digitised", where)] += any(e.data.digitised for e in evs)
        if completed:
            last = max(completed, key=lambda e: (believed(e), e.time, e.id)).data
            assert last.ended_at and last.due_at
            end, due = last.ended_at.astimezone(VN).date(), last.due_at.astimezone(VN).date()
            timeliness = "early" if end < due else "on_time" if end == due else "late"
            labels = (*where, ("channel", latest.data.channel.value), ("timeliness", timeliness))
            out[("commune_dossiers_completed", labels)] += 1
            assert last.received_at
            province = (("province", evs[0].province),)
            out[("commune_dossier_processing_duration_seconds_count", province)] += 1
            out[("commune_dossier_processing_duration_seconds_sum", province)] += (
                last.ended_at - last.received_at).total_seconds()
        is_open = int(latest.data.status) in (2, 4, 5, 6)
        out[("commune_dossiers_open", where)] += is_open
        assert latest.data.due_at is not None or not is_open
        due_at = latest.data.due_at
        out[("commune_dossiers_overdue", where)] += is_open and due_at is not None and past_due(due_at, now)
    reports: dict[tuple[str, str, str], list[Event]] = defaultdict(list)  # reported again: the newest report counts
    announcements: set[tuple[str, str, str]] = set()
    for e in unique:
        if isinstance(e, VisitCompletedEvent):
            reports[("visit", e.commune, e.data.visit_id)].append(e)
        elif isinstance(e, TrainingHeldEvent):
            reports[("training", e.commune, e.data.session_id)].append(e)
        elif e.type.endswith("announcement.scheduled.v1"):  # one announcement, however often it is scheduled
            announcements.add((e.province, e.commune, e.data.announcement_id))
    for evs in reports.values():
        last = max(evs, key=lambda e: (believed(e), e.time, e.id))
        where = (("province", last.province), ("commune", last.commune))
        if isinstance(last, VisitCompletedEvent):
            out[("commune_mobile_team_visits", where)] += 1
            out[("commune_mobile_team_households_reached", where)] += last.data.households_visited
            out[("commune_mobile_team_accounts_activated", where)] += last.data.accounts_activated
        elif isinstance(last, TrainingHeldEvent):
            out[("commune_mobile_team_trainings", where)] += 1
            out[("commune_mobile_team_training_attendees", where)] += last.data.attendees
    told: dict[tuple[str, str], list[Event]] = defaultdict(list)  # an announcement's scheduled events, else broadcasts
    for e in unique:
        if e.type.endswith("announcement.scheduled.v1") or "broadcast-" in e.type:
            told[(e.commune, e.data.announcement_id)].append(e)
    category = {k: max([e for e in evs if "broadcast-" not in e.type] or evs,
                       key=lambda e: (believed(e), e.time, e.id)).data.category.value for k, evs in told.items()}
    for province, commune, ann in announcements:
        out[("commune_announcements_scheduled", (("province", province), ("commune", commune),
                                                 ("category", category[(commune, ann)])))] += 1
    clusters: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
    for e in unique:
        if "broadcast-" in e.type:
            clusters[(e.commune, e.data.announcement_id, e.data.cluster_id)].append(e)
    for (commune, ann, _), broadcasts in clusters.items():  # newest outcome per cluster; a start never undoes an end
        newest = max(broadcasts, key=lambda e: ("started" not in e.type, believed(e), e.time, e.id))
        if "started" not in newest.type:
            outcome = "completed" if "completed" in newest.type else "failed"
            labels = (("province", newest.province), ("commune", commune), ("category", category[(commune, ann)]),
                      ("outcome", outcome))
            out[("commune_broadcasts", labels)] += 1
    return {k: v for k, v in out.items() if v}


LINE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


def parse(text: str) -> dict[Sample, float]:
    """Samples of a Prometheus text exposition (labelled samples only)."""
    out: dict[Sample, float] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            labels = tuple(tuple(kv.split("=", 1)) for kv in m.group(2).split(","))
            out[(m.group(1), tuple((k, v.strip('"')) for k, v in labels))] = float(m.group(3))
    return out


def summed(*texts: str) -> dict[Sample, float]:
    """What Prometheus' sum over workers gives, per series."""
    out: dict[Sample, float] = defaultdict(float)
    for text in texts:
        for k, v in parse(text).items():
            out[k] += v
    return dict(out)


def restricted(samples: dict[Sample, float], like: dict[Sample, float]) -> dict[Sample, float]:
    """The samples of the metric families present in `like`, zeros dropped."""
    names = {name for name, _ in like}
    return {k: v for k, v in samples.items() if k[0] in names and v}
