from typing import Any

# What services/common/aiokafka_compat.py wraps: the commit request its callers' timeouts give up on.
class GroupCoordinator:
    def __init__(self, client: Any, subscription: Any, *, group_id: Any = ..., group_instance_id: Any = ...,
                 session_timeout_ms: Any = ..., heartbeat_interval_ms: Any = ..., retry_backoff_ms: Any = ...,
                 enable_auto_commit: Any = ..., auto_commit_interval_ms: Any = ..., assignors: Any = ...,
                 exclude_internal_topics: Any = ..., max_poll_interval_ms: Any = ...,
                 rebalance_timeout_ms: Any = ...) -> None: ...
    async def commit_offsets(self, assignment: Any, offsets: Any) -> None: ...
    async def _do_commit_offsets(self, assignment: Any, offsets: Any) -> None: ...
