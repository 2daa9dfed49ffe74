"""Every Kafka client of the project is built here, with the project's defaults and the one connection setting.

Defaults: consumers read committed data only, commit explicitly and start from the
earliest offset; producers are idempotent with acks=all; every client accepts records
as large as the registry allows (`schemas.topics.MAX_RECORD_BYTES`). A caller passes
only what differs for its job (`**overrides`).
"""

from __future__ import annotations

import random
import ssl
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import NodeNotReadyError
from aiokafka.helpers import create_ssl_context

from schemas.topics import MAX_RECORD_BYTES
from services.common import aiokafka_compat, header_names, tls_close
from services.common.partitioner import PARTITIONER
from services.common.settings import KafkaConnection

FETCH_BYTES = MAX_RECORD_BYTES + 65536
"""A fetch must fit the largest record a topic accepts, plus its batch header."""


def connection_options(conn: KafkaConnection) -> dict[str, Any]:
    """aiokafka's connection arguments for `conn` (bootstrap, TLS, SASL)."""
    aiokafka_compat.pace_failed_metadata()  # a failed metadata update is retried after the backoff, not at once
    options: dict[str, Any] = {"bootstrap_servers": conn.bootstrap, "security_protocol": conn.security_protocol}
    if conn.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(conn)
        tls_close.apply()  # a stop waits no more for the broker's close_notify than the Java client does
    if conn.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = conn.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = conn.sasl_username
        options["sasl_plain_password"] = conn.sasl_password.get_secret_value() if conn.sasl_password else None
    return options


def _ssl_context(conn: KafkaConnection) -> ssl.SSLContext:
    """One context per set of TLS files while they are unchanged (their modification times are in the key):
    every client of a process shares it instead of parsing the CA again (aiokafka's create_ssl_context:
    certificate checks and host name checks on, the system's default TLS versions, TLS 1.3 with the broker)."""
    files = (conn.ssl_cafile, conn.ssl_certfile, conn.ssl_keyfile)
    return _cached_context(*((str(f), f.stat().st_mtime_ns) if f else None for f in files))


@lru_cache(maxsize=8)
def _cached_context(cafile: tuple[str, int] | None, certfile: tuple[str, int] | None,
                    keyfile: tuple[str, int] | None) -> ssl.SSLContext:
    return create_ssl_context(cafile=cafile[0] if cafile else None, certfile=certfile[0] if certfile else None,
                              keyfile=keyfile[0] if keyfile else None)


REQUEST_TIMEOUT_MS = 40_000
"""aiokafka's (and Java's) default request timeout"""
JOIN_GROUP_LAPSE_MS = 5_000
"""How much longer than the rebalance timeout a JoinGroup may take, as the Java client allows (`AbstractCoordinator`:
max(request.timeout.ms, rebalance.timeout.ms + 5 s))"""


def consumer(conn: KafkaConnection, *topics: str, client_id: str, group_id: str | None = None,
             **overrides: Any) -> AIOKafkaConsumer:
    """A consumer (not started): read_committed, manual commits, earliest offset when the group has none.

    A group member's requests may wait the group's rebalance timeout and 5 s more: the broker answers a JoinGroup only
    once every member has rejoined or the rebalance timeout passed, and aiokafka sends it within its request timeout
    alone (40 s). Measured (secure broker, rebalance timeout 60 s, one member's revocation 45 s): the other member's
    JoinGroup timed out at 40 s, marked the coordinator dead (an ERROR) and was sent again; with the longer timeout it
    was answered once, at 48 s."""
    options: dict[str, Any] = {
        "client_id": client_id, "group_id": group_id, "enable_auto_commit": False,
        "isolation_level": "read_committed", "auto_offset_reset": "earliest", "max_partition_fetch_bytes": FETCH_BYTES,
    }
    if group_id is not None:
        rebalance_ms = overrides.get("rebalance_timeout_ms") or overrides.get("session_timeout_ms", 10_000)
        options["request_timeout_ms"] = max(REQUEST_TIMEOUT_MS, rebalance_ms + JOIN_GROUP_LAPSE_MS)
    aiokafka_compat.retrieve_cancelled_commits()  # a commit timed out logs no "never retrieved" when it fails later
    aiokafka_compat.track_heard()  # when the group last answered that it is a member (notify's fence)
    header_names.read_undecodable_header_names()  # a header name that is not UTF-8 reads as Java reads it: no error
    return AIOKafkaConsumer(*topics, **connection_options(conn), **{**options, **overrides})


def producer(conn: KafkaConnection, *, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (not started), acks=all; keyed records placed as aiokafka's default partitioner places
    them, with the hash in native code (`partitioner.PARTITIONER`)."""
    options: dict[str, Any] = {
        "client_id": client_id, "acks": "all", "enable_idempotence": True, "max_request_size": FETCH_BYTES,
        "partitioner": PARTITIONER,
    }
    aiokafka_compat.settle_failed_batches()  # a sender dead of a fenced producer leaves no unread failure behind
    return AIOKafkaProducer(**connection_options(conn), **{**options, **overrides})


def transactional_producer(conn: KafkaConnection, *, transactional_id: str, client_id: str,
                           **overrides: Any) -> AIOKafkaProducer:
    """A transactional producer (not started); starting it fences any earlier producer with the same id. An abort
    after an abortable error reaches the broker (`aiokafka_compat.keep_aborted_transactions`)."""
    aiokafka_compat.keep_aborted_transactions()
    aiokafka_compat.retrieve_abandoned_offsets()  # offsets refused after their caller gave up: no unread failure
    return producer(conn, client_id=client_id, transactional_id=transactional_id, **overrides)


class _ReadyNodeAdminClient(AIOKafkaAdminClient):
    """aiokafka 0.14's admin client sends a request meant for no broker in particular (metadata, list and describe
    topics, describe configs) to a random broker of its metadata, and fails with NodeNotReadyError when that one is
    down. After a broker crash its metadata lists it until the controller fences it (a broker session, 9 s, or a
    whole one more when the crashed node was the active controller): meanwhile a third of such requests failed in a
    3-broker cluster, and a worker starting then (`ensure_topics`) restarted two or three times (chaos, a worker
    joining right after a coordinator's node was killed). This one sends to a broker that answers, in random order."""

    async def _send_request(self, request: Any, node_id: int | None = None) -> Any:
        client: Any = getattr(self, "_client")  # noqa: B009  (private in aiokafka 0.14, pinned: aiokafka_compat)
        if node_id is not None:
            return await client.send(node_id, request)
        nodes = [broker.nodeId for broker in client.cluster.brokers()]
        random.shuffle(nodes)
        for node in nodes:
            if await client.ready(node):
                return await client.send(node, request)
        raise NodeNotReadyError(f"none of {len(nodes)} brokers answers for a {type(request).__name__}")


def admin(conn: KafkaConnection, *, client_id: str = "commune-bus-admin") -> AIOKafkaAdminClient:
    """An admin client (not started) whose requests for any broker go to one that answers."""
    return _ReadyNodeAdminClient(**connection_options(conn), client_id=client_id)


def faust_options(conn: KafkaConnection) -> dict[str, Any]:
    """The `broker` and `broker_credentials` arguments of a `faust.App` for `conn` (faust runs its own aiokafka)."""
    import faust  # only the notify deadline tracker runs faust; the other services need not import it

    credentials: faust.types.auth.CredentialsT | None = None
    context = _ssl_context(conn) if conn.security_protocol in ("SSL", "SASL_SSL") else None
    if context is not None:
        tls_close.apply()  # faust's own aiokafka clients close their TLS connections at once too
    if conn.security_protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=conn.sasl_username, mechanism=conn.sasl_mechanism or "PLAIN", ssl_context=context,
            password=conn.sasl_password.get_secret_value() if conn.sasl_password else None)
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return {"broker": [f"kafka://{server.strip()}" for server in conn.bootstrap.split(",")],
            "broker_credentials": credentials}
