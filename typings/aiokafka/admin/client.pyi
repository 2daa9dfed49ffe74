# Responses are aiokafka's protocol Struct objects, built from the Kafka schema at run time and untyped: they are
# `Any` here. `list_topics` and `list_consumer_group_offsets` are the typed ones. `describe_topics` returns the
# metadata response's topic dicts ({"error_code", "topic", "is_internal", "partitions": [{...}]}).
from asyncio import AbstractEventLoop
from ssl import SSLContext
from typing import Any, Literal

from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.admin.new_partitions import NewPartitions
from aiokafka.admin.new_topic import NewTopic
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.structs import OffsetAndMetadata, TopicPartition

class AIOKafkaAdminClient:
    def __init__(
        self,
        *,
        loop: AbstractEventLoop | None = None,
        bootstrap_servers: str | list[str] = "localhost",
        client_id: str = ...,
        request_timeout_ms: int = 40000,
        connections_max_idle_ms: int = 540000,
        retry_backoff_ms: int = 100,
        metadata_max_age_ms: int = 300000,
        security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT",
        ssl_context: SSLContext | None = None,
        api_version: None = None,  # deprecated since 0.13, a no-op
        sasl_mechanism: Literal["PLAIN", "GSSAPI", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        sasl_kerberos_service_name: str = "kafka",
        sasl_kerberos_domain_name: str | None = None,
        sasl_oauth_token_provider: AbstractTokenProvider | None = None,
    ) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def create_topics(
        self, new_topics: list[NewTopic], timeout_ms: int | None = None, validate_only: bool = False
    ) -> Any: ...
    async def delete_topics(self, topics: list[str], timeout_ms: int | None = None) -> Any: ...
    async def list_topics(self) -> list[str]: ...
    async def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]: ...
    async def describe_cluster(self) -> dict[str, Any]: ...
    async def describe_configs(
        self, config_resources: list[ConfigResource], include_synonyms: bool = False
    ) -> list[Any]: ...
    async def alter_configs(self, config_resources: list[ConfigResource]) -> list[Any]: ...
    async def create_partitions(
        self, topic_partitions: dict[str, NewPartitions], timeout_ms: int | None = None, validate_only: bool = False
    ) -> Any: ...
    async def describe_consumer_groups(
        self, group_ids: list[str], group_coordinator_id: int | None = None, include_authorized_operations: bool = False
    ) -> list[Any]: ...
    async def list_consumer_groups(self, broker_ids: list[int] | None = None) -> list[tuple[Any, ...]]: ...
    async def find_coordinator(self, group_id: str, coordinator_type: int = 0) -> int: ...
    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]: ...
    async def delete_records(
        self, records_to_delete: dict[TopicPartition, RecordsToDelete], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]: ...
