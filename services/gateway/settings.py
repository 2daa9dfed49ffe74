"""Gateway settings: environment variables with the `GATEWAY_` prefix, Kafka from the shared `KAFKA_*`.

The gateway has one HTTP server, `GATEWAY_HOST:GATEWAY_PORT`: the API and its
`/metrics`, `/healthz`, `/readyz`. Credentials come from a secrets file
(`GATEWAY_SECRETS_FILE`, YAML, kept out of git) mapping each source id of the
registry to its API key and/or HMAC key. They are `SecretStr` from the moment
they are read and are never logged.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from schemas.topics import MAX_RECORD_BYTES
from services.common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]


class Credential(BaseModel):
    """One source system's secrets. Either may be absent; a source with neither cannot authenticate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    hmac_key: SecretStr | None = None


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, populate_by_name=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address of the API and /metrics, /healthz, /readyz "
                      "(0.0.0.0 in a container)")
    port: int = Field(default=8080, ge=1, le=65535, description="Port of the API and /metrics, /healthz, /readyz")
    http_port: int = Field(default=0, ge=0, le=0, description="Unused: the gateway's one HTTP server is host:port")
    sources_file: Path = ROOT / "infra/sources.yaml"
    secrets_file: Path | None = None
    instance_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:8], description="Part of the transactional id")
    max_body_bytes: int = MAX_RECORD_BYTES
    max_records: int = 1000
    kafka_timeout_s: float = 10.0
    retry_after_s: int = 5
    signature_tolerance_s: int = 300
    idempotency_ttl_s: int = 24 * 3600


def load_credentials(path: Path | None) -> dict[str, Credential]:
    """Source id -> credential, from the secrets file (empty when there is none: every request is 401)."""
    if path is None:
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): Credential.model_validate(v) for k, v in raw.items()}
