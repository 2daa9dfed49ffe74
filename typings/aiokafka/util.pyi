from typing import TypeAlias

from aiokafka.structs import OffsetAndMetadata, TopicPartition

# aiokafka checks `isinstance(offsets, dict)`, so a dict it must be; a union of dicts rather than one dict of the
# union, because dict is invariant in its values and callers hold e.g. dict[TopicPartition, int].
_CommitOffsets: TypeAlias = (
    dict[TopicPartition, int]
    | dict[TopicPartition, tuple[int, str]]
    | dict[TopicPartition, OffsetAndMetadata]
    | dict[TopicPartition, int | tuple[int, str] | OffsetAndMetadata]
)

def commit_structure_validate(offsets: _CommitOffsets) -> dict[TopicPartition, OffsetAndMetadata]: ...
