"""metrics settings: environment variables with the `METRICS_` prefix (and the shared `KAFKA_BOOTSTRAP`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import Group


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_", frozen=True, populate_by_name=True, extra="ignore")

    bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "METRICS_BOOTSTRAP")
    )
    namespace: str = Field(default="", description="Topic/group prefix; empty in production, unique per test run")
    worker_id: str = Field(default="0", description="Distinguishes workers of one group (state directory, client id)")
    state_dir: Path = Field(default=Path(".state/metrics"), description="RocksDB stores, one per owned partition")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9103
    snapshot_interval_s: float = Field(default=60.0, gt=0, description="Per-commune snapshot events every ...")
    batch_max_records: int = 5000
    log_level: str = "INFO"

    @property
    def group_id(self) -> str:
        return f"{self.namespace}.{Group.METRICS.value}" if self.namespace else Group.METRICS.value
