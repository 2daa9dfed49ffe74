# What services/common/kip447.py uses (the connection group of coordinator requests) and probe.py (the client).
from enum import IntEnum
from typing import Any

from aiokafka.protocol.api import Request

class ConnectionGroup(IntEnum):
    DEFAULT = 0
    COORDINATION = 1

class CoordinationType(IntEnum):
    GROUP = 0
    TRANSACTION = 1

# services/common/probe.py: do the brokers answer a metadata request? services/common/kip430.py: a request of its own.
class AIOKafkaClient:
    def __init__(
        self,
        *,
        loop: object = None,
        bootstrap_servers: str | list[str] = "localhost",
        client_id: str = ...,
        metadata_max_age_ms: int = 300000,
        request_timeout_ms: int = 40000,
        retry_backoff_ms: int = 100,
        ssl_context: object = None,
        security_protocol: str = "PLAINTEXT",
        api_version: object = None,
        connections_max_idle_ms: int = 540000,
        sasl_mechanism: str = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        sasl_kerberos_service_name: str = "kafka",
        sasl_kerberos_domain_name: str | None = None,
        sasl_oauth_token_provider: object = None,
    ) -> None: ...
    async def bootstrap(self) -> None: ...
    async def close(self) -> None: ...
    def get_random_node(self) -> int | None: ...
    async def send(self, node_id: int, request: Request[Any], *, group: ConnectionGroup = ...) -> Any: ...
