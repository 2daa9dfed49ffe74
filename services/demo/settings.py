"""The demo's own settings (`DEMO_*`): where its files go, its ports, and how often the view refreshes.

Every port is a setting so that a test can run a whole demo beside a developer's
(`DEMO_NAMESPACE` keeps its topics and consumer groups apart on the shared broker).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", frozen=True, populate_by_name=True, extra="ignore",
                                      allow_inf_nan=False)

    namespace: str = Field(default="", description="Topic and group prefix of every process (empty: the real topics)")
    run_dir: Path = Field(default=Path(".demo"), description="Logs (logs/<process>.log) and generated configs")
    state_dir: Path = Field(default=Path(".state"),
                            description="metrics' RocksDB stores, the key stores, Prometheus' TSDB")
    rate: float = Field(default=50.0, gt=0, le=1e6, description="Simulator records per second")
    prometheus: bool | None = Field(default=None, description="Start Prometheus (default: when it is installed)")
    secrets_dir: Path = Field(default=Path("infra/kafka/secrets"),
                              description="Each service's credentials on a secure broker (<service>.env)")

    intake_port: int = Field(default=9101, ge=1, le=65535)
    notify_port: int = Field(default=9102, ge=1, le=65535)
    notify_deadlines_port: int = Field(default=6067, ge=1, le=65535, description="notify's deadline tracker's /metrics")
    metrics_port: int = Field(default=9103, ge=1, le=65535)
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_metrics_port: int = Field(default=9104, ge=1, le=65535, description="The gateway's /metrics")
    providers_port: int = Field(default=8025, ge=1, le=65535, description="Fake SMS/Zalo/webhook providers")
    smtp_port: int = Field(default=8026, ge=1, le=65535, description="The fake providers' SMTP sink")
    prometheus_port: int = Field(default=9090, ge=1, le=65535)

    refresh_s: float = Field(default=1.0, gt=0, le=3_600.0, description="Seconds between two scrapes of the view")
    summary_every_s: float = Field(default=5.0, gt=0, le=3_600.0,
                                   description="Seconds between two summary lines (no TTY)")
    stop_timeout_s: float = Field(default=15.0, gt=0, le=3_600.0,
                                  description="How long processes may take to stop on SIGTERM")

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"
