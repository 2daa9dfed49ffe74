from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor

class RangePartitionAssignor(AbstractPartitionAssignor):
    name: str  # "range"
    version: int
    @classmethod
    def assign(cls, cluster: ClusterMetadata, members: Mapping[str, Any]) -> dict[str, Any]: ...
    @classmethod
    def metadata(cls, topics: Iterable[str]) -> Any: ...
    @classmethod
    def on_assignment(cls, assignment: Any) -> None: ...
