from typing import Any

from aiokafka.protocol.api import Request

# What services/common/joining.py sends: a member's LeaveGroup, on a connection of its own.
class LeaveGroupRequest(Request[Any]):
    def __init__(self, group: str, member_id: str) -> None: ...
    def build(self, request_struct_class: type[Any]) -> Any: ...
