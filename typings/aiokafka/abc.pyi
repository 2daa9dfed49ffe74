import abc
from collections.abc import Awaitable, Set

from aiokafka.structs import TopicPartition

class ConsumerRebalanceListener(abc.ABC):
    # aiokafka calls these with the old assignment (a frozenset) and the new one (a set), and awaits the result
    # when it is a coroutine: implementations may be plain functions or coroutines.
    @abc.abstractmethod
    def on_partitions_revoked(self, revoked: Set[TopicPartition]) -> Awaitable[None] | None: ...
    @abc.abstractmethod
    def on_partitions_assigned(self, assigned: Set[TopicPartition]) -> Awaitable[None] | None: ...

class AbstractTokenProvider(abc.ABC):
    @abc.abstractmethod
    async def token(self) -> str: ...
    def extensions(self) -> dict[str, str]: ...
