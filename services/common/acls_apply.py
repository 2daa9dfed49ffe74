"""Puts `services.common.acls` on a cluster: the SCRAM users that are missing, then every ACL.

Run as a super user (the `admin` principal's KAFKA_* settings). aiokafka's admin has
no CreateAcls nor AlterUserScramCredentials, so this uses librdkafka's admin client
(`confluent-kafka`, already pinned for the benchmarks), with the same connection
settings. Creating an ACL that exists is a no-op, so `apply` can run at every start.
ACLs no longer in the table are not removed (delete them with `kafka-acls --remove`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from services.common.acls import Binding
from services.common.settings import KafkaConnection

SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0


class AclError(Exception):
    """The cluster refused a user or an ACL (the message names which, never a password)."""


def librdkafka_config(conn: KafkaConnection) -> dict[str, Any]:
    """`conn` in librdkafka's terms (what kcat's -F file holds too)."""
    config: dict[str, Any] = {"bootstrap.servers": conn.bootstrap,
                              "security.protocol": conn.security_protocol.lower()}
    if conn.security_protocol.startswith("SASL"):
        config["sasl.mechanisms"] = conn.sasl_mechanism or "PLAIN"
        config["sasl.username"] = conn.sasl_username or ""
        config["sasl.password"] = conn.sasl_password.get_secret_value() if conn.sasl_password else ""
    if conn.ssl_cafile:
        config["ssl.ca.location"] = str(conn.ssl_cafile)
    if conn.ssl_certfile:
        config["ssl.certificate.location"] = str(conn.ssl_certfile)
    if conn.ssl_keyfile:
        config["ssl.key.location"] = str(conn.ssl_keyfile)
    return config


def _apply(conn: KafkaConnection, rows: list[Binding], users: list[str], secrets: Path | None) -> None:
    # the classes' own modules: the package re-exports them without __all__ (mypy --strict refuses that import)
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
    from confluent_kafka.admin._scram import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    client = AdminClient(librdkafka_config(conn))
    if secrets is not None:
        described = client.describe_user_scram_credentials(users, request_timeout=TIMEOUT_S)
        assert isinstance(described, dict), "one future per user when users are named"
        missing = []
        for user, future in described.items():
            try:
                future.result()
            except Exception:  # RESOURCE_NOT_FOUND: no credential yet
                missing.append(user)
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = []
        for user in missing:
            password = secrets / f"{user}.password"
            if password.exists():
                upserts.append(UserScramCredentialUpsertion(user, info, password.read_bytes().strip()))
        if upserts:
            for user, future in client.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT_S).items():
                try:
                    future.result()
                except Exception as exc:
                    raise AclError(f"SCRAM user {user} not created: {type(exc).__name__}") from None
    acls = [AclBinding(ResourceType[b.resource.value], b.name, ResourcePatternType[b.pattern.value],
                       b.kafka_principal, "*", AclOperation[b.operation.value], AclPermissionType.ALLOW)
            for b in rows]
    failed = []
    row_of = dict(zip(acls, rows, strict=True))
    for acl, future in client.create_acls(acls, request_timeout=TIMEOUT_S).items():
        row = row_of[acl]
        try:
            future.result()
        except Exception as exc:
            failed.append(f"{row.principal} {row.operation.value} {row.name}: {exc}")
    if failed:
        raise AclError(f"{len(failed)} ACLs refused: " + "; ".join(failed[:5]))


async def apply(conn: KafkaConnection, rows: Iterable[Binding], users: Iterable[str] = (),
                secrets: Path | None = None) -> None:
    """Create the SCRAM users of `users` that are missing (password `<secrets>/<user>.password`), then `rows`."""
    await asyncio.to_thread(_apply, conn, list(rows), list(users), secrets)
