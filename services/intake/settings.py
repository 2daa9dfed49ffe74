"""intake settings: `INTAKE_*` environment variables, plus the shared `KAFKA_*` connection settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas import topics
from services.common.settings import ConsumerSettings
from services.intake.normalise import DEFAULT_MAX_RECORD_BYTES


class IntakeSettings(ConsumerSettings):
    """Session timing from `ConsumerSettings`: a worker silent for `session_timeout_ms` loses its tasks."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", frozen=True, populate_by_name=True, extra="ignore")

    http_port: int = Field(default=9101, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 = none")
    worker_id: str = Field(
        default="0",
        description="Names the worker in client ids and logs. Transactional ids do not derive from it: they are "
        "per raw partition number (`task_transactional_id`), the same on every worker (ADR 0011)",
    )
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_canonical_bytes: int = Field(
        default=1_000_000, ge=1024,
        description="A canonical record larger than this is dead-lettered (payload_too_large) instead of being sent: "
        "the canonical topics keep the broker's default max.message.bytes (1,048,588 with the batch header)",
    )
    batch_max_records: int = Field(
        default=2000, description="At most this many raw records validated and waiting for a transaction (a backlog "
        "drains in fewer commits)"
    )
    batch_max_bytes: int = Field(
        default=16 * 1024 * 1024, description="At most about this many raw bytes validated and waiting (memory stays "
        "bounded)"
    )
    max_transactions_in_flight: int = Field(
        default=2, ge=1,
        description="Transactions committing at once over all of the worker's tasks (one per task at most, the "
        "oldest waiting first): each costs the broker's transaction coordinator the same, however few records it "
        "carries, so fewer and larger ones keep latency down on a busy broker",
    )
    transaction_timeout_ms: int = 15_000
    sources_file: str | None = Field(default=None, description="Source registry; unset = every source allowed")

    @property
    def group_id(self) -> str:
        return topics.group_id(topics.Group.INTAKE, self.namespace)

    def task_transactional_id(self, partition: int) -> str:
        """`<namespace.>commune-bus.intake.p<N>`: whoever is assigned raw partition N fences its earlier owner."""
        return topics.transactional_id(topics.TransactionalId.INTAKE, self.namespace, f"p{partition}")
