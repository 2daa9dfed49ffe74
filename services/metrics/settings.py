"""metrics settings: the shared service settings (`KAFKA_*` connection) plus `METRICS_*` variables."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas.topics import Group, TransactionalId, group_id, transactional_id
from services.common.settings import MAX_SESSION_TIMEOUT_MS, MAX_TRANSACTION_TIMEOUT_MS, ConsumerSettings


class MetricsSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_", frozen=True, populate_by_name=True, extra="ignore")

    http_port: int = Field(default=9103, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 = none")
    worker_id: str = Field(default="0", description="Distinguishes workers of one group (state directory, client id)")
    state_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "commune-bus-metrics",
        description="RocksDB stores, one per owned partition, rebuilt from the changelog at every start: the system's "
        "temporary folder by default, as notify's (a relative .state/metrics was under the container's /app, which "
        "its user may not write: metrics crashed in the shipped container)")
    snapshot_interval_s: float = Field(default=60.0, gt=0, le=86_400.0,
                                       description="Per-commune snapshot events every ...")
    batch_max_records: int = Field(
        default=10_000, gt=0, le=1_000_000,
        description="Most records applied (and committed) at once. Each batch ends in a changelog transaction per "
        "partition and an offset commit that the next batch waits for: 5,000 gave 16,500-17,000 events/s per worker "
        "on the bench, 10,000-40,000 gave 18,000-22,000 (docs/benchmarks.md); 10,000 keeps a backlog's batch at "
        "~0.5 s of the loop, well inside the stall limit")
    transaction_timeout_ms: int = Field(default=60_000, ge=1_000, le=MAX_TRANSACTION_TIMEOUT_MS,
                                        description="A changelog transaction not committed by then is aborted "
                                        "by the broker, and ends the run here")
    commit_timeout_ms: int = Field(
        default=30_000, ge=1_000, le=MAX_SESSION_TIMEOUT_MS,
        description="An offset commit not done by then (aiokafka retries one for as long as the group coordinator "
        "is unreachable) ends the run, which restarts from Kafka; the batch's states are already in the changelog")

    @property
    def group_id(self) -> str:
        return group_id(Group.METRICS, self.namespace)

    def changelog_transactional_id(self, partition: int) -> str:
        """`<namespace.>commune-bus.metrics.p<N>`, the same on every worker: whoever owns N fences its last owner."""
        return transactional_id(TransactionalId.METRICS, self.namespace, f"p{partition}")
