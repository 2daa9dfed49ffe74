"""The dead-letter replay log's key: which DLQ offset `commune-bus dlq replay` has already re-driven."""

from __future__ import annotations

from schemas.topics import DLQ_REPLAYED

__all__ = ["DLQ_REPLAYED", "replay_key"]


def replay_key(dlq_topic: str, partition: int, offset: int) -> bytes:
    return f"{dlq_topic}:{partition}:{offset}".encode()
