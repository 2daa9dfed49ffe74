# The request/response base classes services/common/kip447.py builds its KIP-447 requests on.
import abc
from typing import ClassVar, Generic, TypeVar

from aiokafka.protocol.struct import Struct
from aiokafka.protocol.types import Schema

T = TypeVar("T", bound=RequestStruct)

class Request(abc.ABC, Generic[T]):
    API_KEY: ClassVar[int]
    ALLOW_UNKNOWN_API_VERSION: ClassVar[bool]
    @abc.abstractmethod
    def build(self, request_struct_class: type[T]) -> T: ...
    def prepare(self, versions: dict[int, tuple[int, int]]) -> T: ...

class RequestStruct(Struct, metaclass=abc.ABCMeta):
    FLEXIBLE_VERSION: ClassVar[bool]
    API_KEY: ClassVar[int]
    API_VERSION: ClassVar[int]
    RESPONSE_TYPE: ClassVar[type[Response]]
    SCHEMA: ClassVar[Schema]

class Response(Struct, metaclass=abc.ABCMeta):
    SCHEMA: ClassVar[Schema]
