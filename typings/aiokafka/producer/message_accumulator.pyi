from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.record.default_records import DefaultRecordMetadata

class BatchBuilder:
    def __init__(
        self,
        batch_size: int,
        compression_type: int,
        *,
        is_transactional: int = 0,
        key_serializer: Callable[[object], bytes] | None = None,
        value_serializer: Callable[[object], bytes] | None = None,
    ) -> None: ...
    # `timestamp` in milliseconds since the epoch, None for now (aiokafka's docstring says seconds, but the record
    # builder raises TypeError for anything but an int); returns None when the batch is full or closed
    def append(
        self,
        *,
        timestamp: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = ...,
    ) -> DefaultRecordMetadata | None: ...
    def close(self) -> None: ...
    def size(self) -> int: ...
    def record_count(self) -> int: ...
    def closed(self) -> bool: ...

# What services/common/aiokafka_compat.py wraps: a failed batch put back, and its drain waiter left unread.
class MessageBatch:
    def __init__(self, tp: Any, builder: Any, ttl: Any, linger_time: Any) -> None: ...
    def failure(self, exception: Any) -> None: ...

class MessageAccumulator:
    def __init__(
        self,
        cluster: Any,
        batch_size: Any,
        compression_type: Any,
        batch_ttl: Any,
        *,
        txn_manager: Any = None,
        loop: Any = None,
        linger_ms: Any = 0,
    ) -> None: ...
    def reenqueue(self, batch: Any) -> None: ...
