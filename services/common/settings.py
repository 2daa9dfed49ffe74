"""Settings every service shares: how to reach Kafka (one place), the namespace, logging and the HTTP port.

Connection settings are read from `KAFKA_*` variables by every service and the CLI
alike (`KAFKA_BOOTSTRAP`, `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`),
so one deployment points all of them at its cluster once (a service also reads its own
prefix, `INTAKE_SASL_USERNAME`, ..., where the `KAFKA_` variable is not set). Secrets are `SecretStr`:
they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.stall import stall_limit_s

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
MAX_SESSION_TIMEOUT_MS = 1_800_000
"""The broker's default `group.max.session.timeout.ms` (30 min): a longer session is refused at every join."""
MAX_TRANSACTION_TIMEOUT_MS = 900_000
"""The broker's default `transaction.max.timeout.ms` (15 min): a longer transaction timeout is refused at every
start (`InvalidTransactionTimeout`, a permanent error)."""
MAX_STOP_DEADLINE_S = 3_600.0
"""The longest stop deadline a service takes: an hour, far past any orchestrator's grace period (Kubernetes'
30 s by default); a larger one only put off the forced exit of a stop that no longer ends."""
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
CertificateRole = Literal["kafka_ca", "kafka_client", "gateway"]
"""What a PEM file a service loads is for: the label of its expiry gauge (`services.common.certificates`), never its
path or subject."""


def _kafka(name: str, default: Any, description: str) -> Any:
    """A connection field read from `KAFKA_<NAME>` whatever the service's own prefix."""
    return Field(default=default, validation_alias=f"KAFKA_{name.upper()}", description=description)


_ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._-]+)?\]|[A-Za-z0-9_][A-Za-z0-9._-]{0,252})"
                      r"(?::(?P<port>[0-9]{1,5}))?", re.ASCII)
"""One bootstrap address: a host name (a trailing dot too) or IPv4 address, or an IPv6 address in brackets (a zone
id too), and a port (aiokafka's 9092 without one)."""


class KafkaConnection(BaseSettings):
    """How a client reaches and authenticates to the cluster; `services.common.clients` applies it to every client."""

    # allow_inf_nan=False, inherited by every service's settings: a float given as `inf` (or `1e999`) is refused at
    # start. It passed `gt=0`: NOTIFY_DRAIN_S and NOTIFY_LEDGER_KEEP_DAYS crashed every run (OverflowError making the
    # rebalance timeout, the pruning window), and `<SERVICE>_STOP_DEADLINE_S` never forced a stop (a bounded stop).
    model_config = SettingsConfigDict(env_prefix="KAFKA_", frozen=True, populate_by_name=True, extra="ignore",
                                      allow_inf_nan=False)

    bootstrap: str = _kafka("bootstrap", "127.0.0.1:9092", "Bootstrap servers, host:port[,host:port]")
    security_protocol: SecurityProtocol = _kafka("security_protocol", "PLAINTEXT",
                                                 "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    sasl_mechanism: SaslMechanism | None = _kafka("sasl_mechanism", None, "SASL mechanism (SASL_* protocols)")
    sasl_username: str | None = _kafka("sasl_username", None, "SASL user name")
    sasl_password: SecretStr | None = _kafka("sasl_password", None, "SASL password")
    ssl_cafile: Path | None = _kafka("ssl_cafile", None, "CA certificate(s) that signed the brokers' certificates")
    ssl_certfile: Path | None = _kafka("ssl_certfile", None, "Client certificate (mutual TLS)")
    ssl_keyfile: Path | None = _kafka("ssl_keyfile", None, "Client private key (mutual TLS)")

    @field_validator("bootstrap")
    @classmethod
    def _addresses(cls, value: str) -> str:
        """Each address `host[:port]` (an IPv6 host in brackets), its port 1 to 65535: a malformed one (`host:abc`,
        `host:99999`, `[::1`, a byte not ASCII) ended in aiokafka with a traceback (ValueError, OverflowError,
        UnicodeEncodeError) once a client was made (CLI audit)."""
        for item in value.split(","):
            found = _ADDRESS.fullmatch(item.strip())
            if found is None or (found["port"] is not None and not 0 < int(found["port"]) < 65536):
                raise ValueError("each address is host:port (an IPv6 host in brackets), the port 1 to 65535, "
                                 "separated by commas")
        return value

    @model_validator(mode="after")
    def _usable(self) -> Self:
        """What a SASL protocol needs is given: a user name and a password (the mechanism is PLAIN unless set,
        `clients.connection_options`, as aiokafka's). A missing one ended in
        aiokafka with a traceback (`'NoneType' object has no attribute 'encode'`) once the connection was tried (CLI
        audit). TLS files are checked where they are loaded, not here: settings may name another machine's paths (a
        container's)."""
        if self.security_protocol.startswith("SASL_"):
            missing = [f"KAFKA_SASL_{name.upper()}" for name in ("username", "password")
                       if getattr(self, f"sasl_{name}") is None]
            if missing:
                raise ValueError(f"{' and '.join(missing)} must be set with a SASL_* KAFKA_SECURITY_PROTOCOL")
        return self

    @classmethod
    def from_env_file(cls, path: str | Path) -> KafkaConnection:
        """The connection a `KAFKA_*=value` file gives (infra/kafka/secrets/<principal>.env), ignoring the environment;
        `path` as `kafka.sh env <principal>` prints it, or a Path.

        Lines without `=` and comments are skipped; variables other than `KAFKA_*` are ignored.
        """
        values: dict[str, str] = {}
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and name.startswith("KAFKA_") and not name.startswith("#"):
                values[name] = value.strip()
        return KafkaConnection.model_validate(values)

    def environment(self) -> dict[str, str]:
        """This connection as `KAFKA_*` variables, for a child process (contains the password in clear)."""
        env = {"KAFKA_BOOTSTRAP": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        optional = {"KAFKA_SASL_MECHANISM": self.sasl_mechanism, "KAFKA_SASL_USERNAME": self.sasl_username,
                    "KAFKA_SASL_PASSWORD": self.sasl_password.get_secret_value() if self.sasl_password else None,
                    "KAFKA_SSL_CAFILE": self.ssl_cafile, "KAFKA_SSL_CERTFILE": self.ssl_certfile,
                    "KAFKA_SSL_KEYFILE": self.ssl_keyfile}
        return {**env, **{name: str(value) for name, value in optional.items() if value is not None}}

    def connection(self) -> KafkaConnection:
        """Only the connection part (a service's settings are a connection plus its own fields)."""
        return KafkaConnection.model_validate({name: getattr(self, name) for name in KafkaConnection.model_fields})


class ServiceSettings(KafkaConnection):
    """The base of every service's frozen settings: connection, namespace, logging, the service's HTTP server.

    Each service sets its own `env_prefix` and default `http_port`; `http_host` stays
    127.0.0.1 unless a deployment (a container) opens it.
    """

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", allow_inf_nan=False)

    namespace: str = Field(default="", description="Topic and group prefix; empty in production, unique per test run")
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)")
    http_host: str = Field(default="127.0.0.1",
                           description="Address of /metrics, /healthz, /readyz (0.0.0.0 in a container)")
    http_port: int = Field(default=0, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 = no server")
    stop_deadline_s: float = Field(
        default=25.0, gt=0, le=MAX_STOP_DEADLINE_S,
        description="After a stop signal the worker has this long to finish what it holds; then the process exits "
        "as if killed (what it held is redone by its successor, as after SIGKILL), and so does a second signal at "
        "once. 25 s: inside Kubernetes' default grace period of 30 s")

    def certificate_files(self) -> dict[CertificateRole, Path]:
        """The PEM certificate files this service loads, by role: the Kafka CA bundle and client certificate when the
        connection uses TLS (a PLAINTEXT one loads neither). A service that serves TLS itself adds its own."""
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return {}
        files: dict[CertificateRole, Path | None] = {"kafka_ca": self.ssl_cafile, "kafka_client": self.ssl_certfile}
        return {role: path for role, path in files.items() if path is not None}

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        """`debug` is `DEBUG`; anything else unknown is refused at start (it was a `KeyError` traceback)."""
        return value.strip().upper() if isinstance(value, str) else value


class ConsumerSettings(ServiceSettings):
    """A service that consumes in a group: its session timing, and how long its loop may stand still."""

    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=MAX_SESSION_TIMEOUT_MS,
                                    description="Consumer group session timeout")
    heartbeat_interval_ms: int = Field(default=3_000, ge=100, le=MAX_SESSION_TIMEOUT_MS // 3,
                                       description="At most a third of the session timeout")

    @model_validator(mode="after")
    def _heartbeats_within_session(self) -> Self:
        """Kafka's advice: three heartbeats at least within a session. At or above it, every missed heartbeat evicted
        the member ("Heartbeat session expired") and the run restarted, for ever."""
        if 3 * self.heartbeat_interval_ms > self.session_timeout_ms:
            prefix = str(self.model_config.get("env_prefix", "")).upper()
            raise ValueError(f"{prefix}HEARTBEAT_INTERVAL_MS must be at most a third of {prefix}SESSION_TIMEOUT_MS")
        return self

    @property
    def stall_limit_s(self) -> float:
        """A loop standing still longer than this may have been evicted (`services.common.stall`, ADR 0012)."""
        return stall_limit_s(self.session_timeout_ms, self.heartbeat_interval_ms)

    def heard_limit_s(self) -> float:
        """A consumer its group has not answered as a member for longer than this may have been evicted (cut off
        from the broker: `aiokafka_compat.heard_at`, ADR 0046): a heartbeat's interval short of the session."""
        return (self.session_timeout_ms - self.heartbeat_interval_ms) / 1000
