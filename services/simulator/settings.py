"""Simulator settings: `SIMULATOR_*` environment variables, Kafka from the shared `KAFKA_*`, overridden by flags.

The simulator serves no HTTP (`http_port` stays 0): it is a load generator, not a service to scrape.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas.events import Family
from services.common.settings import ServiceSettings


class SimulatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", frozen=True, populate_by_name=True, extra="ignore")

    province: str = Field(default="20", pattern=r"^\d{2}$", description="Official province code; 20 = Lạng Sơn")
    rate: float = Field(default=50.0, gt=0, description="Records per second")
    duration: float = Field(default=0.0, ge=0, description="Seconds to run; 0 = until stopped")
    invalid_share: float = Field(default=0.05, ge=0, le=1, description="Fraction of deliberately bad records")
    seed: int | None = None
    day_seconds: float = Field(default=10.0, gt=0, description="Real seconds per simulated day")
    backfill_days: float = Field(default=14.0, gt=0, description="How far back event times may reach")
    portal_share: float = Field(default=0.35, ge=0, le=1, description="Communes syncing dossiers in the portal shape")
    families: tuple[Family, ...] = tuple(Family)
    progress_every: float = Field(default=5.0, gt=0, description="Seconds between progress lines")

    @property
    def day_events(self) -> float:
        return self.rate * self.day_seconds
