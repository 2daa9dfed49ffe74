"""National mode: the whole official map, rates integrating to DOMAIN.md's volumes, a morning peak, intake's inputs."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import datetime, timedelta

import pytest
from pydantic import TypeAdapter
from vietnam_provinces import Province, Ward, WardCode

from schemas.admin import CommuneCode, ProvinceCode, commune_provinces
from schemas.events import Family
from schemas.times import VIETNAM
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.simulator import national
from services.simulator.__main__ import parse
from services.simulator.generate import generate
from services.simulator.profiles import PEAK_FACTOR, Pacer, shape
from services.simulator.settings import SimulatorSettings
from services.simulator.world import build_communes

pytestmark = pytest.mark.unit
MONDAY = datetime(2025, 11, 3, 0, 0, tzinfo=VIETNAM)
WEEK_S = 7 * 86_400
COMMUNE = TypeAdapter(CommuneCode)
PROVINCE = TypeAdapter(ProvinceCode)
NATIONAL = generate(3_000, seed=21, national=True, day_events=national.records_per_day())


def test_national_world_has_34_provinces_and_3321_valid_communes() -> None:
    """Every official commune once, under its own province, with codes that validate as intake validates them."""
    communes = build_communes(random.Random(1), national.all_provinces(), 0.35)
    assert len({c.province for c in communes}) == 34 == len(list(Province.iter_all()))
    assert len(communes) == 3_321 == len({c.code for c in communes}) == len(list(Ward.iter_all()))
    assert all(COMMUNE.validate_python(c.code) == c.code and len(c.code) == 5 for c in communes)
    assert all(PROVINCE.validate_python(c.province) == c.province for c in communes)
    assert all(int(Ward.from_code(WardCode(int(c.code))).province_code) == int(c.province) for c in communes)


def test_daily_profile_integrates_to_the_national_volume() -> None:
    """Over a simulated week the daily profile sends 7 x the national daily volume; a working day 1.30 x."""
    mean = national.mean_rate()
    hours = [MONDAY + timedelta(hours=h) for h in range(7 * 24)]
    week = sum(mean * shape("daily", t) * 3600 for t in hours)
    assert week == pytest.approx(7 * national.records_per_day(), rel=1e-9)
    monday = sum(mean * shape("daily", t) * 3600 for t in hours[:24])
    assert monday == pytest.approx(national.records_per_day() * 7 / (5 + 2 * national.WEEKEND_SHARE), rel=1e-9)


def test_pacer_sends_a_weeks_volume_in_a_simulated_week() -> None:
    """The pacer's due times (starting mid-hour, a day compressed 100x) put a week's records in a simulated week."""
    start = MONDAY + timedelta(hours=5, minutes=17)
    pacer = Pacer("daily", mean_rate=2.0, sim_start=start, speed=100.0)
    week_real_s = WEEK_S / 100
    expected = 2.0 * week_real_s
    due = [pacer.due(n) for n in range(int(expected) + 50)]
    assert due[0] == 0.0 and all(a < b for a, b in itertools.pairwise(due))
    sent = sum(1 for t in due if t < week_real_s)
    assert abs(sent - expected) <= 1


def test_daily_profile_peaks_in_the_morning_of_working_days() -> None:
    """The highest hourly rate of a week falls on a working day between 08:00 and 11:00, above any afternoon hour."""
    rates = {MONDAY + timedelta(hours=h): shape("daily", MONDAY + timedelta(hours=h)) for h in range(7 * 24)}
    top = max(rates, key=lambda t: rates[t])
    assert top.weekday() < 5 and 8 <= top.hour < 11
    afternoon = max(r for t, r in rates.items() if 13 <= t.hour < 18)
    assert rates[top] > afternoon
    weekend = max(r for t, r in rates.items() if t.weekday() >= 5)
    night = max(r for t, r in rates.items() if t.hour < 6)
    assert rates[top] > 3 * weekend and rates[top] > 10 * night


def test_peak_mode_holds_the_peak_rate_all_day_and_all_week() -> None:
    """Peak mode's due times are evenly spaced at the daily profile's highest rate, nights and weekends alike."""
    mean = national.mean_rate()
    highest = max(mean * shape("daily", MONDAY + timedelta(hours=h)) for h in range(7 * 24))
    pacer = Pacer("peak", mean_rate=mean, sim_start=MONDAY + timedelta(days=5, hours=2), speed=1.0)  # Saturday 02:00
    gaps = {round(pacer.due(n + 1) - pacer.due(n), 9) for n in range(0, 200_000, 997)}
    assert gaps == {round(1 / highest, 9)}
    assert pacer.rate_at(0) == pytest.approx(highest) == pacer.rate_at(3 * 86_400)
    assert highest == pytest.approx(mean * PEAK_FACTOR)
    assert 25 < highest < 40  # ~31 records/s nationally (national.py's derivation)


def test_national_records_for_random_communes_are_valid_intake_inputs() -> None:
    """Records drawn across the country normalise to canonical events in intake, for communes of most provinces."""
    rejected = [r for r in NATIONAL if not isinstance(normalise(r.family, r.value, r.headers), Accepted)]
    assert rejected == []
    provinces = Counter(commune_provinces()[r.key.decode()] for r in NATIONAL)
    assert len(provinces) >= 30
    assert {r.family for r in NATIONAL} == set(Family)


def test_national_settings_derive_rate_and_run_in_real_time() -> None:
    """--national: a real-time day and the derived rate; --rate is refused beside it; one province stays the default."""
    settings = parse(["--national", "--profile", "daily"])
    assert settings.national and settings.profile == "daily"
    assert settings.day_seconds == 86_400 and settings.speed == 1.0
    assert settings.mean_rate == pytest.approx(national.records_per_day() / 86_400)
    assert settings.day_events == pytest.approx(national.records_per_day())
    faster = parse(["--national", "--day-seconds", "864"])
    assert faster.mean_rate == pytest.approx(100 * settings.mean_rate)
    with pytest.raises(SystemExit):
        parse(["--national", "--rate", "10"])
    default = SimulatorSettings()
    assert not default.national and default.profile == "flat" and default.mean_rate == default.rate == 50.0


def test_family_volumes_follow_domain_md() -> None:
    """Dossier records a day are 3,321 communes x 26 dossiers x 5 events; the other families stay smaller."""
    volumes = national.family_records_per_day()
    assert volumes[Family.DOSSIER] == 3_321 * 26 * 5
    assert all(volumes[f] < volumes[Family.DOSSIER] / 4 for f in (Family.MOBILE_TEAM, Family.ANNOUNCEMENT))
    assert national.commune_count() == 3_321 and len(national.all_provinces()) == 34
