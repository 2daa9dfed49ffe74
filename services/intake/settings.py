"""intake settings: environment variables with the `INTAKE_` prefix (and the shared `KAFKA_BOOTSTRAP`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import Group
from services.intake.normalise import DEFAULT_MAX_RECORD_BYTES


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", frozen=True, populate_by_name=True)

    bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "INTAKE_BOOTSTRAP")
    )
    namespace: str = Field(default="", description="Topic/group prefix; empty in production, unique per test run")
    worker_id: str = Field(
        default="0",
        description="Stable per worker (e.g. a StatefulSet ordinal): the transactional id derives from it, "
        "so a restarted worker fences its killed predecessor at once",
    )
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    batch_max_records: int = Field(
        default=2000, description="At most this many raw records per transaction (a backlog drains in fewer commits)"
    )
    batch_max_bytes: int = Field(
        default=16 * 1024 * 1024, description="At most about this many raw bytes per transaction (memory stays bounded)"
    )
    transaction_timeout_ms: int = 15_000
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9101
    log_level: str = "INFO"
    sources_file: str | None = Field(default=None, description="Source registry; unset = every source allowed")

    @property
    def group_id(self) -> str:
        return f"{self.namespace}.{Group.INTAKE.value}" if self.namespace else Group.INTAKE.value

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}.{self.worker_id}"
