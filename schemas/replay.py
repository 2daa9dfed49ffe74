"""The dead-letter replay log: which DLQ offsets `commune-bus dlq replay` has already re-driven.

Kept apart from `schemas.topics.TOPICS` only because that module belongs to the
foundation; it follows the same `TopicSpec` shape and `scoped()` rules.
"""

from __future__ import annotations

from schemas.topics import Kind, TopicSpec

DLQ_REPLAYED = TopicSpec(
    "commune.dlq.replayed", Kind.INTERNAL, key="<dlq topic>:<partition>:<offset> of a re-driven dead letter",
    description="Replay log of `commune-bus dlq replay`, written in the same transaction as the re-driven record, "
    "so a dead letter is never replayed twice",
    partitions=1, config={"cleanup.policy": "compact"},
)


def replay_key(dlq_topic: str, partition: int, offset: int) -> bytes:
    return f"{dlq_topic}:{partition}:{offset}".encode()
