"""National rates, derived from the volumes the domain brief (`shared/DOMAIN.md`) states ("Scale to plan for").

Derivation (records per day, all 34 provinces and 3,321 communes):

- dossiers: one merged commune received ~3,300 dossiers in its first ~4 months, ~26 a (calendar) day;
  nationally 3,321 x 26 = 86,346 dossiers a day, each with 4-6 status events (5 taken):
  86,346 x 5 = **431,730 dossier records a day**;
- mobile teams and announcements: DOMAIN.md calls them "small" and gives no volume, so they keep the
  simulator's own mix (`generate.KINDS`: per dossier lifecycle of 4.4 records, 0.48 / 0.58 mobile-team
  and 0.32 / 0.58 announcement records): x 0.188 = **81,203 mobile-team records** and x 0.125 =
  **54,135 announcement records a day**;
- in all **567,069 records a day**, 6.56 records/s averaged over a whole week.

Time of day: "most of them in office hours with a morning peak". The centres keep office hours Monday to
Friday (`workdays.py`); at weekends only online submissions and answers continue, taken as a fifth of a
working day (an assumption: DOMAIN.md gives no weekend figure). The 26-a-day figure is a calendar-day
average, so a week holds 7 x 567,069 records: a working day 1.30 x, a weekend day 0.26 x the average day.
The working-day shape (`profiles.WORKING_DAY`) peaks 09:00-10:00 at 4.77 x the average rate: 31.3 records/s
nationally, the rate the peak-hour mode holds.
"""

from __future__ import annotations

from schemas.admin import commune_provinces, province_names
from schemas.events import Family

COMMUNES = 3_321
PROVINCES = 34
DOSSIERS_PER_COMMUNE_DAY = 26
EVENTS_PER_DOSSIER = 5  # DOMAIN.md: 4-6 status events per dossier
WEEKEND_SHARE = 0.2  # a weekend day's volume as a share of a working day's (assumption, see above)


def family_records_per_day() -> dict[Family, float]:
    """National records per average (calendar) day by family: dossiers from DOMAIN.md, the rest by the mix."""
    from services.simulator.generate import KINDS  # generate imports this module's users; import late

    per_family = {f: sum(k.weight * k.mean_events for k in KINDS if k.family is f) for f in Family}
    dossiers = float(COMMUNES * DOSSIERS_PER_COMMUNE_DAY * EVENTS_PER_DOSSIER)
    return {f: dossiers * per_family[f] / per_family[Family.DOSSIER] for f in Family}


def records_per_day(families: tuple[Family, ...] = tuple(Family)) -> float:
    """National records per average day for the chosen families."""
    volumes = family_records_per_day()
    return sum(volumes[f] for f in families)


def mean_rate(families: tuple[Family, ...] = tuple(Family)) -> float:
    """National records per second averaged over a week, in real time."""
    return records_per_day(families) / 86_400


def all_provinces() -> tuple[str, ...]:
    """The official province codes (34 since July 2025), sorted."""
    return tuple(sorted(province_names()))


def commune_count() -> int:
    """Communes in the official list the simulator draws from (3,321 since July 2025)."""
    return len(commune_provinces())
