"""intake settings: `INTAKE_*` environment variables, plus the shared `KAFKA_*` connection settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import topics
from services.common.settings import MAX_TRANSACTION_TIMEOUT_MS, ConsumerSettings
from services.intake.normalise import DEFAULT_MAX_RECORD_BYTES


class IntakeLimits(BaseSettings):
    """What intake refuses a record for by its deployment's settings: what `commune-bus validate` reads too (it used
    intake's defaults, so a deployment's lower `INTAKE_MAX_RECORD_BYTES` passed records intake dead-letters)."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", frozen=True, populate_by_name=True, extra="ignore")

    max_record_bytes: int = Field(
        default=DEFAULT_MAX_RECORD_BYTES, ge=1024, le=topics.MAX_RECORD_BYTES,
        description="A raw record larger than this is dead-lettered; at most the raw topics' max.message.bytes")
    max_canonical_bytes: int = Field(
        default=topics.CANONICAL_RECORD_BYTES, ge=1024, le=topics.MAX_RECORD_BYTES,
        description="A canonical record larger than this is dead-lettered (payload_too_large) instead of being sent: "
        "the canonical topics keep the broker's default max.message.bytes (1,048,588 with the batch header); raised, "
        "intake creates canonical topics that take it and refuses to start on existing ones that would not. Notify's "
        "ledger is sized for the default (a parked webhook holds its event): above it, the webhook of an event past "
        "the default is dead-lettered when it would be parked",
    )
    seal_personal_data: bool = Field(
        default=True, description="Seal applicants' personal data in canonical events and dead letters (ADR 0015): "
        "needs PRIVACY_KEK(_FILE) and PRIVACY_PEPPER(_FILE); false only for a deployment that carries none")


class IntakeSettings(ConsumerSettings, IntakeLimits):
    """Session timing from `ConsumerSettings`: a worker silent for `session_timeout_ms` loses its tasks."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", frozen=True, populate_by_name=True, extra="ignore")

    http_port: int = Field(default=9101, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 = none")
    worker_id: str = Field(
        default="0",
        description="Stable per worker (e.g. a StatefulSet ordinal), unique in the group: names the worker's "
        "transactional id, so a restarted worker aborts what its predecessor left open (ADR 0017)",
    )
    batch_max_records: int = Field(
        default=2000, ge=1, le=1_000_000,
        description="At most this many raw records validated and waiting for a transaction (a backlog drains in "
        "fewer commits)"
    )
    batch_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024,
        description="At most about this many raw bytes validated and waiting (memory stays bounded)"
    )
    transaction_timeout_ms: int = Field(
        default=15_000, ge=1_000, le=MAX_TRANSACTION_TIMEOUT_MS,
        description="A transaction left open by a dead worker is aborted by the broker after this; at least 1 s, as "
        "the gateway's and metrics': it also bounds each transaction's wait and twice it the start's waits on the "
        "broker, so a few ms failed every start and every commit, and the run restarted for ever")
    sources_file: str | None = Field(
        default=str(Path(__file__).resolve().parents[2] / "infra/sources.yaml"),
        description="Source registry (who may publish what, for which communes; ADR 0018), the gateway's; empty: "
        "every source allowed, for tests and tools only (it was the default: a demo's intake took any source)")

    @property
    def group_id(self) -> str:
        return topics.group_id(topics.Group.INTAKE, self.namespace)

    @property
    def transactional_id(self) -> str:
        """`<namespace.>commune-bus.intake.<worker_id>`: a restarted worker fences its predecessor's producer."""
        return topics.transactional_id(topics.TransactionalId.INTAKE, self.namespace, self.worker_id)
