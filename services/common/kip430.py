"""What this principal may do on topics, asked without doing it: KIP-430's authorized operations in a Metadata v8
request, which aiokafka 0.14 does not have (its Metadata requests stop at v5, its admin client's `describe_topics`
asks no rights).

`topic_rights` lets `commune-bus dlq replay` tell, before writing anything and in a `--dry-run` too, which dead letters
go back to a topic the principal may write (the operator may not write a source's own raw topic, ADR 0018): a
producer learns it only by a send refused after its metadata wait (40 s). Metadata v8 is not a flexible version (plain
request and response headers); every broker since Kafka 2.3 answers it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Schema, String

from services.common import clients, closing
from services.common.settings import KafkaConnection

Right = Literal["write", "no_write", "missing"]
"""A topic this principal may write; one it may not (or may not even describe: the broker does not tell that from a
topic that is not there); one the broker says does not exist (to a principal that may describe it)."""
WRITE_BIT = 1 << 4
"""Kafka's AclOperation WRITE (4): the bit set in `topic_authorized_operations` when the principal may write."""
NOT_ASKED = -(2**31)
"""What the broker puts in `topic_authorized_operations` when it did not compute them."""


class MetadataResponse_v8(Response):
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", Array(("node_id", Int32), ("host", String("utf-8")), ("port", Int32), ("rack", String("utf-8")))),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        ("topics", Array(
            ("error_code", Int16),
            ("name", String("utf-8")),
            ("is_internal", Boolean),
            ("partitions", Array(
                ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32), ("leader_epoch", Int32),
                ("replica_nodes", Array(Int32)), ("isr_nodes", Array(Int32)), ("offline_replicas", Array(Int32)))),
            ("topic_authorized_operations", Int32))),
        ("cluster_authorized_operations", Int32),
    )


class MetadataRequest_v8(RequestStruct):
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),  # on the wire as an array of {name}
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class MetadataWithRights(Request[MetadataRequest_v8]):
    API_KEY = 3

    def __init__(self, topics: Iterable[str]) -> None:
        self._topics = sorted(set(topics))

    def build(self, request_struct_class: type[MetadataRequest_v8]) -> MetadataRequest_v8:
        return request_struct_class(self._topics, False, False, True)  # never creates a topic


def rights_of(response: Any) -> dict[str, Right] | None:
    """Each topic's `Right` from a Metadata v8 response; None if the broker did not compute the rights."""
    out: dict[str, Right] = {}
    for error_code, name, _internal, _partitions, operations in response.topics:
        if error_code == UnknownTopicOrPartitionError.errno:
            out[name] = "missing"
        elif error_code == TopicAuthorizationFailedError.errno:
            out[name] = "no_write"
        elif operations == NOT_ASKED:
            return None
        else:
            out[name] = "write" if error_code == 0 and operations & WRITE_BIT else "no_write"
    return out


async def topic_rights(conn: KafkaConnection, topics: Iterable[str]) -> dict[str, Right] | None:
    """What this principal may do on each of `topics`, as the broker's authorizer says (no record written, no topic
    created); None when the broker cannot say (older than Kafka 2.3, or it did not compute them): then only a write
    tells."""
    wanted = sorted(set(topics))
    if not wanted:
        return {}
    admin = clients.admin(conn)
    await admin.start()
    try:
        client: AIOKafkaClient = getattr(admin, "_client")  # noqa: B009 - aiokafka's admin holds its client privately
        node = client.get_random_node()
        if node is None:  # no broker in the metadata the admin's start read
            return None
        try:
            response = await client.send(node, MetadataWithRights(wanted))
        except (IncompatibleBrokerVersion, NotImplementedError):  # no Metadata v8 on this broker
            return None
    finally:
        await closing.close_within("admin", "admin client", admin.close)
    rights = rights_of(response)
    return None if rights is None else {name: rights.get(name, "missing") for name in wanted}
