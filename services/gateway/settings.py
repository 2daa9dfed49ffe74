"""Gateway settings: environment variables with the `GATEWAY_` prefix (and the shared `KAFKA_BOOTSTRAP`).

Credentials come from a secrets file (`GATEWAY_SECRETS_FILE`, YAML, kept out of
git) mapping each source id of the registry to its API key and/or HMAC key.
They are `SecretStr` from the moment they are read and are never logged.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import MAX_RECORD_BYTES

ROOT = Path(__file__).resolve().parents[2]


class Credential(BaseModel):
    """One source system's secrets. Either may be absent; a source with neither cannot authenticate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    hmac_key: SecretStr | None = None


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True)

    bootstrap: str = Field(default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "GATEWAY_BOOTSTRAP"))
    namespace: str = Field(default="", description="Topic prefix; empty in production, unique per test run")
    host: str = "127.0.0.1"
    port: int = 8080
    sources_file: Path = ROOT / "infra/sources.yaml"
    secrets_file: Path | None = None
    instance_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:8], description="Part of the transactional id")
    max_body_bytes: int = MAX_RECORD_BYTES
    max_records: int = 1000
    kafka_timeout_s: float = 10.0
    retry_after_s: int = 5
    signature_tolerance_s: int = 300
    idempotency_ttl_s: int = 24 * 3600
    log_level: str = "INFO"


def load_credentials(path: Path | None) -> dict[str, Credential]:
    """Source id -> credential, from the secrets file (empty when there is none: every request is 401)."""
    if path is None:
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): Credential.model_validate(v) for k, v in raw.items()}
