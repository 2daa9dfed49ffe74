"""Office calendar of a commune service centre: Monday to Friday, 07:30-11:30 and 13:30-17:00, Vietnam time."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta

from schemas.times import VIETNAM

OFFICE_HOURS = ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 0)))
CLOSE = time(17, 0)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5


def next_working_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=VIETNAM)


def next_office_time(t: datetime) -> datetime:
    """`t` itself if the centre is open then, else the next opening."""
    t = t.astimezone(VIETNAM)
    day = t.date()
    while True:
        if is_working_day(day):
            for opens, closes in OFFICE_HOURS:
                start, end = at(day, opens), at(day, closes)
                if t < end:
                    return max(t, start)
        day = next_working_day(day)
        t = at(day, time(0, 0))


def after_office_delay(t: datetime, minutes: float) -> datetime:
    """`minutes` of office time after `t` (skipping nights, lunch breaks and weekends)."""
    t = next_office_time(t)
    left = timedelta(minutes=minutes)
    while True:
        closes = next(at(t.date(), c) for o, c in OFFICE_HOURS if at(t.date(), o) <= t < at(t.date(), c))
        if t + left <= closes:
            return t + left
        left -= closes - t
        t = next_office_time(closes)


def due_date(received: datetime, working_days: int) -> datetime:
    """Closing time of the `working_days`-th working day after receipt (0 = the same day)."""
    day = next_office_time(received).date()
    for _ in range(working_days):
        day = next_working_day(day)
    return at(day, CLOSE)


def office_time_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A random office-time instant in [start, end]; `start` when there is none."""
    first = next_office_time(start)
    if first >= end:
        return start
    span = (end - first).total_seconds()
    for _ in range(8):
        t = next_office_time(first + timedelta(seconds=rng.uniform(0, span)))
        if t <= end:
            return t
    return first
