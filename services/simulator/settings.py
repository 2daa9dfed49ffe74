"""Simulator settings: `SIMULATOR_*` environment variables, Kafka from the shared `KAFKA_*`, overridden by flags.

The simulator serves no HTTP (`http_port` stays 0): it is a load generator, not a service to scrape.
One province at `rate` records/s is the default (`make demo`); `national` drives all 34 provinces and
3,321 communes at the national rate derived from DOMAIN.md (`national.py`), in real time unless
`day_seconds` compresses the simulated day. `profile` shapes the rate by the simulated time of day.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field, model_validator
from pydantic_settings import SettingsConfigDict

from schemas.events import Family
from services.common.settings import ServiceSettings
from services.simulator import national as nat
from services.simulator.profiles import ProfileName

REAL_TIME_DAY_S = 86_400.0


class SimulatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", frozen=True, populate_by_name=True, extra="ignore")

    province: str = Field(default="20", pattern=r"^\d{2}$", description="Official province code; 20 = Lạng Sơn")
    national: bool = Field(default=False, description="All 34 provinces and 3,321 communes at national rates")
    profile: ProfileName = Field(default="flat", description="flat, daily (morning peak) or peak (peak hour held)")
    rate: float = Field(default=50.0, gt=0, le=1e6,
                        description="Mean records per second (one province; national derives it)")
    duration: float = Field(default=0.0, ge=0, le=366 * 86_400.0, description="Seconds to run (a year at most); "
                            "0 = until stopped")
    invalid_share: float = Field(default=0.05, ge=0, le=1, description="Fraction of deliberately bad records")
    seed: int | None = None
    day_seconds: float = Field(default=10.0, gt=0, le=86_400.0,
                               description="Real seconds per simulated day (national: 86,400)")
    backfill_days: float = Field(default=14.0, gt=0, le=3_650.0, description="How far back event times may reach")
    portal_share: float = Field(default=0.35, ge=0, le=1, description="Communes syncing dossiers in the portal shape")
    families: tuple[Family, ...] = tuple(Family)
    progress_every: float = Field(default=5.0, gt=0, le=86_400.0, description="Seconds between progress lines")
    now: AwareDatetime | None = Field(
        default=None, description="The simulated present (default: the wall clock). With `seed`, the same stream "
        "whenever it runs: what is sent depends on the time of day (mobile teams keep office hours)")

    @model_validator(mode="before")
    @classmethod
    def _national_runs_in_real_time(cls, data: Any) -> Any:
        """National mode's simulated day lasts a real day unless `day_seconds` is given."""
        national = isinstance(data, dict) and str(data.get("national", "")).lower() in ("true", "1", "yes", "on")
        if national and "day_seconds" not in data:
            return {**data, "day_seconds": REAL_TIME_DAY_S}
        return data

    @property
    def mean_rate(self) -> float:
        """Records/s averaged over a simulated week: `rate`, or the national volume per `day_seconds`."""
        if self.national:
            return nat.records_per_day(self.families) / self.day_seconds
        return self.rate

    @property
    def day_events(self) -> float:
        return self.mean_rate * self.day_seconds

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return REAL_TIME_DAY_S / self.day_seconds
