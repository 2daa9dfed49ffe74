"""On a secure broker each demo process connects as its own principal (ADR 0014), never as the admin running it.

`make demo` runs as `admin` (it creates the topics); the processes it starts get
the credentials of `infra/kafka/secrets/<service>.env` instead, so the demo runs
under the same least-privilege ACLs as a deployment: a service that needs a
topic its ACLs do not grant fails in the demo too. The bootstrap address stays
the demo's own (one broker or the cluster). Processes that are no Kafka client
(the fake providers, Prometheus) get no Kafka credentials at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.common.settings import KafkaConnection

SERVICES = frozenset({"intake", "metrics", "notify", "gateway", "simulator"})
"""Demo processes that are Kafka clients; each one's principal has its name."""
CREDENTIALS = ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CERTFILE",
               "KAFKA_SSL_KEYFILE")


class MissingCredentials(Exception):
    """The broker is secure but a service's credentials file is missing (the broker script makes them)."""


def secure(env: Mapping[str, str]) -> bool:
    return env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper().startswith("SASL")


def environment(name: str, env: Mapping[str, str], secrets: Path, namespace: str = "") -> dict[str, str]:
    """The environment of demo process `name`: on a secure broker its own principal's credentials replace the
    admin's (a non-client gets none); on a PLAINTEXT broker, or in a namespace (a test's demo beside the real
    one: the ACLs name the registry's own topics), `env` as it is."""
    if not secure(env) or namespace:
        return dict(env)
    own = {k: v for k, v in env.items() if k not in CREDENTIALS}
    if name not in SERVICES:
        return own
    path = secrets / f"{name}.env"
    if not path.is_file():
        raise MissingCredentials(f"demo: no credentials for principal {name!r} in {path.parent} (they are made by "
                                 "`infra/kafka/kafka.sh start` with KAFKA_SECURE=1)")
    creds = KafkaConnection.from_env_file(path).environment()
    creds["KAFKA_BOOTSTRAP"] = env.get("KAFKA_BOOTSTRAP", creds["KAFKA_BOOTSTRAP"])
    return own | creds
