"""The traffic of a province, or of the whole country, as one deterministic stream of raw records (no Kafka, no clock).

Time compression: lifecycles start at arrivals spread over a *virtual* timeline
and records come out in virtual-time order, `day_events` records per simulated
day. The shell sends them at `rate` records/s, so a simulated day passes in
`day_events / rate` seconds (on average when `profiles.Pacer` makes the rate
follow the time of day). Event times stay plausible: a lifecycle's dates are
anchored in the `backfill_days` before `now` (wrapping round when the
virtual timeline passes `now`), and a step dated after `now` is never sent -
its dossier just stays open, as real ones do.

National mode draws from all 3,321 official communes of the 34 provinces. The package of official codes
carries no population, so communes are weighted as in one province: a random factor in [0.4, 1.6],
doubled for wards (phường, urban). Rates come from `national` (derived from DOMAIN.md).
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.deadletter import Reason
from schemas.events import Family
from schemas.times import VIETNAM
from services.simulator.community import announcement_lifecycle, support_lifecycle, training_lifecycle, visit_lifecycle
from services.simulator.defects import defective
from services.simulator.dossiers import dossier_lifecycle
from services.simulator.national import all_provinces
from services.simulator.render import DEFECT_HEADER, RawRecord, record
from services.simulator.world import Commune, Sequences, Step, build_communes

DEFAULT_NOW = datetime(2025, 11, 3, 17, 0, tzinfo=VIETNAM)
"""The clock `generate` uses unless told otherwise, so a seed alone fixes the output."""

Lifecycle = Callable[[random.Random, Commune, datetime, Sequences], list[Step]]


@dataclass(frozen=True)
class Kind:
    name: str
    family: Family
    plan: Lifecycle
    weight: float  # share of arrivals
    mean_events: float  # records per lifecycle, roughly (sets the arrival rate)


KINDS: tuple[Kind, ...] = (
    Kind("dossier", Family.DOSSIER, dossier_lifecycle, 0.58, 4.4),
    Kind("support", Family.MOBILE_TEAM, support_lifecycle, 0.20, 1.0),
    Kind("visit", Family.MOBILE_TEAM, visit_lifecycle, 0.08, 3.0),
    Kind("training", Family.MOBILE_TEAM, training_lifecycle, 0.04, 1.0),
    Kind("announcement", Family.ANNOUNCEMENT, announcement_lifecycle, 0.04, 8.0),
)


@dataclass(frozen=True)
class TrafficConfig:
    province: str = "20"
    national: bool = False  # all 34 provinces; `province` is then ignored
    invalid_share: float = 0.0
    day_events: float = 500.0
    backfill_days: float = 14.0
    portal_share: float = 0.35
    families: tuple[Family, ...] = field(default=tuple(Family))

    @property
    def provinces(self) -> tuple[str, ...]:
        return all_provinces() if self.national else (self.province,)

    def __post_init__(self) -> None:
        if not 0.0 <= self.invalid_share <= 1.0:
            raise ValueError("invalid_share must be between 0 and 1")
        if self.day_events <= 0 or self.backfill_days <= 0:
            raise ValueError("day_events and backfill_days must be positive")


@dataclass(frozen=True, slots=True)
class Emitted:
    record: RawRecord
    at: datetime  # the event's time (for progress display)
    defect: Reason | None  # the dead-letter reason expected, for deliberately bad records


def traffic(seed: int | None, now: datetime, config: TrafficConfig = TrafficConfig()) -> Iterator[Emitted]:
    """Endless stream of raw records for the real communes; the same seed and `now` give the same stream."""
    rng = random.Random(seed)
    communes = build_communes(rng, config.provinces, config.portal_share)
    commune_weights = [rng.uniform(0.4, 1.6) * (2.0 if c.name.startswith("Phường") else 1.0) for c in communes]
    commune_cum = list(itertools.accumulate(commune_weights))  # choices() would sum 3,321 weights per draw
    kinds = [k for k in KINDS if k.family in config.families]
    if not kinds:
        raise ValueError("no event family selected")
    kind_cum = list(itertools.accumulate(k.weight for k in kinds))
    mean = sum(k.weight * k.mean_events for k in kinds) / sum(k.weight for k in kinds)
    arrival_rate = config.day_events / 86_400 / mean  # lifecycles per virtual second
    window = config.backfill_days * 86_400
    start = now - timedelta(seconds=window)
    seq, tie = Sequences(), itertools.count()
    pending: list[tuple[float, int, Step, Commune]] = []
    next_arrival = rng.expovariate(arrival_rate)
    while True:
        while not pending or pending[0][0] > next_arrival:
            kind = rng.choices(kinds, cum_weights=kind_cum)[0]
            commune = rng.choices(communes, cum_weights=commune_cum)[0]
            base = start + timedelta(seconds=next_arrival % window)
            for step in kind.plan(rng, commune, base, seq):
                if step.at <= now:  # later steps have not happened yet
                    heapq.heappush(pending, (next_arrival + (step.at - base).total_seconds(), next(tie), step, commune))
            next_arrival += rng.expovariate(arrival_rate)
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if rng.random() < config.invalid_share:
            _, _, step, commune = pending[0]
            bad = defective(rng, step, commune, event_id)
            yield Emitted(bad, step.at, Reason(dict(bad.headers)[DEFECT_HEADER].decode()))
        else:
            _, _, step, commune = heapq.heappop(pending)
            yield Emitted(record(step, commune, event_id), step.at, None)


def generate(
    n: int, seed: int = 0, province: str = "20", invalid_share: float = 0.0,
    families: Iterable[Family] | None = None, now: datetime = DEFAULT_NOW, day_events: float = 500.0,
    national: bool = False,
) -> list[RawRecord]:
    """The first `n` records of the province's (or country's) traffic: deterministic for a seed (benchmarks, tests)."""
    config = TrafficConfig(province=province, national=national, invalid_share=invalid_share, day_events=day_events,
                           families=tuple(families) if families is not None else tuple(Family))
    return [e.record for e in itertools.islice(traffic(seed, now, config), n)]
