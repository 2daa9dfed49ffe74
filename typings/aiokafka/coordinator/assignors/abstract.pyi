# The member metadata and assignments are aiokafka's untyped protocol Structs, hence `Any`.
import abc
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.cluster import ClusterMetadata

class AbstractPartitionAssignor(abc.ABC):
    @property
    @abc.abstractmethod
    def name(self) -> str: ...
    @classmethod
    @abc.abstractmethod
    def assign(cls, cluster: ClusterMetadata, members: Mapping[str, Any]) -> dict[str, Any]: ...
    @classmethod
    @abc.abstractmethod
    def metadata(cls, topics: Iterable[str]) -> Any: ...
    @classmethod
    @abc.abstractmethod
    def on_assignment(cls, assignment: Any) -> None: ...
