"""Mobile-team visits, training sessions, support answers, and loudspeaker announcements with their broadcasts."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta

from schemas import announcement as ann
from schemas import mobile_team as mt
from schemas.codes import AnnouncementCategory, Locale, Priority
from schemas.times import VIETNAM
from services.simulator import catalogue as cat
from services.simulator.workdays import at, next_office_time, next_working_day
from services.simulator.world import Commune, Sequences, Step

BROADCAST_FAILURE_SHARE = 0.06
BROADCAST_SLOTS = (time(6, 0), time(11, 0), time(17, 30))


def visit_lifecycle(rng: random.Random, commune: Commune, arrival: datetime, seq: Sequences) -> list[Step]:
    """Scheduled 1-3 working days ahead, started around the planned hour, completed 2-4.5 hours later."""
    planned_at = next_office_time(arrival)
    visit_id = f"{commune.code}-V{seq.next('visit', commune.code):05d}"
    ref = {"visit_id": visit_id, "team_id": rng.choice(commune.teams), "village": rng.choice(commune.villages)}
    day = planned_at.date()
    for _ in range(rng.randint(1, 3)):
        day = next_working_day(day)
    scheduled_for = at(day, rng.choice((time(8, 0), time(14, 0))))
    started = scheduled_for + timedelta(minutes=rng.uniform(-10, 25))
    completed = started + timedelta(hours=rng.uniform(2, 4.5))
    households = rng.randint(5, 45)
    people = int(households * rng.uniform(1.0, 2.2))
    return [
        Step(planned_at, mt.VISIT_SCHEDULED, visit_id, {
            **ref, "scheduled_for": scheduled_for,
            "planned_activities": rng.sample(cat.VISIT_ACTIVITIES, rng.randint(1, 3)),
        }),
        Step(started, mt.VISIT_STARTED, visit_id, {**ref, "started_at": started}),
        Step(completed, mt.VISIT_COMPLETED, visit_id, {
            **ref, "started_at": started, "completed_at": completed, "households_visited": households,
            "people_assisted": people, "dossiers_submitted": rng.randint(0, people // 3),
            "accounts_activated": rng.randint(0, people // 2),
        }),
    ]


def training_lifecycle(rng: random.Random, commune: Commune, arrival: datetime, seq: Sequences) -> list[Step]:
    held = next_office_time(arrival)
    session_id = f"{commune.code}-S{seq.next('training', commune.code):05d}"
    return [Step(held, mt.TRAINING_HELD, session_id, {
        "session_id": session_id, "team_id": rng.choice(commune.teams), "topic": rng.choice(cat.TRAINING_TOPICS),
        "village": rng.choice(commune.villages), "held_at": held,
        "attendees": min(500, int(rng.lognormvariate(3.8, 0.6))),
    })]


def support_lifecycle(rng: random.Random, commune: Commune, arrival: datetime, seq: Sequences) -> list[Step]:
    """A question answered by the procedures response team, between 06:00 and 22:00."""
    local = arrival.astimezone(VIETNAM)
    answered = local if 6 <= local.hour < 22 else local.replace(hour=6, minute=rng.randint(0, 59)) + timedelta(
        days=1 if local.hour >= 22 else 0)
    request_id = f"{commune.code}-R{seq.next('support', commune.code):06d}"
    channel = rng.choices(list(cat.SUPPORT_WEIGHTS), weights=list(cat.SUPPORT_WEIGHTS.values()))[0]
    return [Step(answered, mt.SUPPORT_ANSWERED, request_id, {
        "request_id": request_id, "team_id": rng.choice(commune.teams), "channel": channel.value,
        "answered_at": answered,
    })]


def announcement_lifecycle(rng: random.Random, commune: Commune, arrival: datetime, seq: Sequences) -> list[Step]:
    """Emergencies go out to every cluster within minutes; routine news waits for the next broadcast slot."""
    category = rng.choices(list(cat.ANNOUNCEMENT_WEIGHTS), weights=list(cat.ANNOUNCEMENT_WEIGHTS.values()))[0]
    emergency = category.is_emergency
    announcement_id = f"{commune.code}-A{seq.next('announcement', commune.code):05d}"
    if emergency:
        scheduled_at = arrival
        starts_at = arrival + timedelta(minutes=rng.uniform(2, 10))
        clusters = list(commune.clusters)
        priority = Priority.EMERGENCY
    else:
        scheduled_at = next_office_time(arrival)
        starts_at = _next_slot(scheduled_at + timedelta(hours=1))
        clusters = sorted(rng.sample(commune.clusters, rng.randint(1, len(commune.clusters))))
        urgent = category is AnnouncementCategory.PUBLIC_SERVICE and rng.random() < 0.2
        priority = Priority.HIGH if urgent else Priority.ROUTINE
    languages = [Locale.VI.value] + ([Locale.EN.value] if rng.random() < 0.15 else []) + (
        [Locale.KM.value] if rng.random() < 0.05 else [])
    common = {"announcement_id": announcement_id, "category": category.value, "priority": priority.value}
    steps = [Step(scheduled_at, ann.ANNOUNCEMENT_SCHEDULED, announcement_id, {
        **common,
        "title": rng.choice(cat.ANNOUNCEMENT_TITLES[category]),
        "target_villages": [v for c in clusters for v in commune.cluster_villages(c)], "target_clusters": clusters,
        "languages": languages, "starts_at": starts_at,
        "ends_at": starts_at + timedelta(days=rng.randint(1, 3)) if emergency else None,
    })]
    for cluster in clusters:
        started = starts_at + timedelta(seconds=rng.uniform(0, 90))
        if rng.random() < BROADCAST_FAILURE_SHARE:
            failed = started + timedelta(seconds=rng.uniform(5, 60))
            steps.append(Step(failed, ann.BROADCAST_FAILED, announcement_id, {
                **common, "cluster_id": cluster, "failed_at": failed,
                "failure_reason": rng.choice(cat.BROADCAST_FAILURES),
            }))
            continue
        completed = started + timedelta(minutes=rng.uniform(3, 15))
        steps.append(Step(started, ann.BROADCAST_STARTED, announcement_id,
                          {**common, "cluster_id": cluster, "started_at": started}))
        steps.append(Step(completed, ann.BROADCAST_COMPLETED, announcement_id, {
            **common, "cluster_id": cluster, "started_at": started, "completed_at": completed,
            "speakers_confirmed": rng.randint(2, 15) if rng.random() < 0.7 else None,
        }))
    return steps


def _next_slot(after: datetime) -> datetime:
    local = after.astimezone(VIETNAM)
    day = local.date()
    while True:
        for slot in BROADCAST_SLOTS:
            if (candidate := at(day, slot)) >= local:
                return candidate
        day += timedelta(days=1)
