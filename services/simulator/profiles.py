"""Send rate as a function of the simulated local time of day, and the pacing it implies (pure, no clock).

Three profiles, each `mean_rate` x a shape whose average over a week is 1 (so a simulated day holds
`mean_rate x day_seconds` records on average, as the flat profile always did):

- `flat`: the shape is 1 at every hour (today's behaviour);
- `daily`: hourly weights of a working day with a 09:00-10:00 peak and a weekend day at
  `national.WEEKEND_SHARE` of a working day (online traffic only: the centres are closed);
- `peak`: the daily profile's highest hourly rate, held constantly (a peak-hour load test).

Vietnam keeps UTC+7 all year (no daylight saving), so a simulated local hour is always 3,600 simulated
seconds and the shape is piecewise constant on whole hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from schemas.times import VIETNAM
from services.simulator.national import WEEKEND_SHARE

ProfileName = Literal["flat", "daily", "peak"]
HOUR = timedelta(hours=1)

WORKING_DAY: tuple[float, ...] = (
    0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.5, 3.0,  # 00-08: online only at night; counters open 07:30
    9.0, 10.0, 8.0, 4.0, 1.5, 4.0, 7.0, 6.5,  # 08-16: the morning peak, lunch break 11:30-13:30
    5.0, 2.0, 1.0, 0.8, 0.7, 0.5, 0.3, 0.2,  # 16-24: counters close at 17:00, online tails off
)
"""Relative volume of each local hour of a working day (office hours Mon-Fri, `workdays.OFFICE_HOURS`)."""
_WEEKEND_HOURS = (0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 0.9, 1.2, 1.5, 1.6, 1.5,
                  1.2, 1.2, 1.4, 1.5, 1.5, 1.4, 1.3, 1.3, 1.2, 1.0, 0.7, 0.5)
WEEKEND_DAY: tuple[float, ...] = tuple(w * WEEKEND_SHARE * sum(WORKING_DAY) / sum(_WEEKEND_HOURS)
                                       for w in _WEEKEND_HOURS)
"""A weekend day: online submissions and answers only, flatter, `WEEKEND_SHARE` of a working day in all."""


def _normalised() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Both shapes scaled so that the average hour of a week weighs 1."""
    week = 5 * sum(WORKING_DAY) + 2 * sum(WEEKEND_DAY)
    scale = 7 * 24 / week
    return tuple(w * scale for w in WORKING_DAY), tuple(w * scale for w in WEEKEND_DAY)


WORKING_SHAPE, WEEKEND_SHAPE = _normalised()
PEAK_FACTOR = max(WORKING_SHAPE)
"""The peak hour's rate as a multiple of the weekly mean rate."""


def shape(profile: ProfileName, local: datetime) -> float:
    """The rate multiplier of `profile` at the simulated instant `local` (any time zone)."""
    if profile == "flat":
        return 1.0
    if profile == "peak":
        return PEAK_FACTOR
    t = local.astimezone(VIETNAM)
    return (WEEKEND_SHAPE if t.weekday() >= 5 else WORKING_SHAPE)[t.hour]


@dataclass
class Pacer:
    """When each record is due, in real seconds after the start, under a profile.

    The simulated clock starts at `sim_start` and runs `speed` simulated seconds per real second
    (86,400 / day_seconds). The real send rate at simulated instant t is `mean_rate x shape(t)`.
    `due(n)` must be asked for n = 0, 1, 2, ... in order (the pump does): it walks hour segments forward.
    """

    profile: ProfileName
    mean_rate: float
    sim_start: datetime
    speed: float
    _seg_start: float = 0.0  # real seconds since start at which the current hour segment begins
    _seg_count: float = 0.0  # records due before the segment begins
    _seg_hour: datetime | None = None  # the segment's simulated local hour (start of the hour)

    def __post_init__(self) -> None:
        if self.mean_rate <= 0 or self.speed <= 0:
            raise ValueError("mean_rate and speed must be positive")

    def due(self, n: int) -> float:
        """Real seconds after the start at which record `n` (0-based) is due."""
        if self.profile != "daily":  # constant: exact, no accumulated rounding
            return n / (self.mean_rate * shape(self.profile, self.sim_start))
        if self._seg_hour is None:
            self._seg_hour = self.sim_start.astimezone(VIETNAM).replace(minute=0, second=0, microsecond=0)
            self._seg_start = -(self.sim_start - self._seg_hour).total_seconds() / self.speed  # <= 0
            self._seg_count = self._rate() * self._seg_start  # so that record 0 is due at real time 0
        while True:
            rate, length = self._rate(), 3600 / self.speed
            if self._seg_count + rate * length > n:
                return self._seg_start + (n - self._seg_count) / rate
            self._seg_count += rate * length
            self._seg_start += length
            self._seg_hour += HOUR

    def rate_at(self, real_s: float) -> float:
        """The target send rate (records/s) at `real_s` real seconds after the start."""
        return self.mean_rate * shape(self.profile, self.sim_at(real_s))

    def sim_at(self, real_s: float) -> datetime:
        """The simulated local instant `real_s` real seconds after the start."""
        return self.sim_start + timedelta(seconds=real_s * self.speed)

    def _rate(self) -> float:
        assert self._seg_hour is not None
        return self.mean_rate * shape("daily", self._seg_hour)
