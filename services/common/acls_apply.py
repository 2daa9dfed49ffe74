"""Puts `services.common.acls` on a cluster: the SCRAM users that are missing, then every ACL.

Run as a super user (the `admin` principal's KAFKA_* settings). aiokafka's admin has
no CreateAcls nor AlterUserScramCredentials, so this uses librdkafka's admin client
(`confluent-kafka`, already pinned for the benchmarks), with the same connection
settings. Creating an ACL that exists is a no-op, so `apply` can run at every start.

`apply` reconciles: within its scope (the registry's resource names under the
namespace, `commune…`), an ACL of a principal it manages (every principal of the
table, and every `source-…` and `subscriber-…` principal) that the table no longer holds is deleted.
A source removed from `infra/sources.yaml`, or an entry narrowed, loses its rights
at the next start; its SCRAM user stays, but can do nothing (no ACL, and
`allow.everyone.if.no.acl.found=false`). ACLs of other namespaces (tests), of
other principals and on other names are never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

from schemas.topics import namespaced
from services.common.acls import Binding
from services.common.settings import KafkaConnection

log = structlog.get_logger("acls")
SCRAM_ITERATIONS = 8192
SCOPE = "commune"
"""Every topic, group and transactional id of the registries begins with it (namespaced: `<ns>.commune`)."""
REGISTRY_PRINCIPALS = ("User:source-", "User:subscriber-")
"""Principals the registry makes (one per source, one per subscriber): managed even once out of the table."""
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


def _apply(conn: KafkaConnection, rows: list[Binding], users: list[str], secrets: Path | None, scope: str) -> None:
    # the classes' own modules: the package re-exports them without __all__ (mypy --strict refuses that import)
    from confluent_kafka import KafkaError, KafkaException
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
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.RESOURCE_NOT_FOUND:  # a timeout, no right: not "missing"
                    raise AclError(f"SCRAM user {user} not described: {exc.args[0].name()}") from None
                missing.append(user)  # no credential yet
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = []
        for user in missing:
            password = secrets / f"{user}.password"
            if password.exists():
                upserts.append(UserScramCredentialUpsertion(user, info, password.read_bytes().strip()))
            else:  # granted ACLs all the same, but it cannot log in: said, not silent
                log.warning("acls.user_without_password", user=user, expected=str(password))
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
    for revoked in _prune(client, acls, scope):
        log.info("acls.revoked", acl=revoked)  # principal, operation, resource name: no secret


def _prune(client: Any, wanted: list[Any], scope: str) -> list[str]:
    """Delete the managed ACLs in `scope` that are not `wanted`; returns them as `principal operation name`."""
    from confluent_kafka.admin._acl import AclBindingFilter, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    # None matches any name, principal and host (librdkafka's filter; its annotations say str)
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                             AclOperation.ANY, AclPermissionType.ANY)
    existing = client.describe_acls(every, request_timeout=TIMEOUT_S).result()
    managed = {acl.principal for acl in wanted}
    keep = set(wanted)
    stale = [acl for acl in existing  # ALLOWs only: a DENY is an operator's (an incident's), never the table's
             if acl.permission_type == AclPermissionType.ALLOW
             and (acl.principal in managed or acl.principal.startswith(REGISTRY_PRINCIPALS))
             and acl.name.startswith(scope) and acl not in keep]
    if not stale:
        return []
    filters = [AclBindingFilter(a.restype, a.name, a.resource_pattern_type, a.principal, a.host, a.operation,
                                a.permission_type) for a in stale]
    for future in client.delete_acls(filters, request_timeout=TIMEOUT_S).values():
        try:
            future.result()
        except Exception as exc:
            raise AclError(f"stale ACLs not deleted: {type(exc).__name__}") from None
    return [f"{a.principal} {a.operation.name} {a.name}" for a in stale]


async def apply(conn: KafkaConnection, rows: Iterable[Binding], users: Iterable[str] = (),
                secrets: Path | None = None, namespace: str = "") -> None:
    """Create the SCRAM users of `users` that are missing (password `<secrets>/<user>.password`), then `rows`; then
    delete the managed ACLs of `namespace`'s scope that `rows` no longer hold."""
    await asyncio.to_thread(_apply, conn, list(rows), list(users), secrets, namespaced(SCOPE, namespace))
