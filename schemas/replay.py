"""The dead-letter replay log's key: which dead letter `commune-bus dlq replay` and `notify-dlq replay` re-drove.

A key names the letter's position on its DLQ and a digest of the letter's own bytes (`letter_digest`). The position
alone named, for good (the log is compacted), whatever letter came to be at that position: once the DLQ topic was
recreated (a `TopicLayoutError` says to, a restore does it), new letters at replayed positions listed as replayed and
were never replayed (operator audit). Keys of the first form (`position_key`, written before 2026-12-06) are still
read as they were written: the letter at that position is taken as replayed, so no letter replayed then is replayed
again, and a recreated DLQ's letters at those positions stay unreplayable (ADR 0033).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

from schemas.topics import DLQ_REPLAYED

__all__ = ["DLQ_REPLAYED", "is_replayed", "letter_digest", "position_key", "replay_key"]

_NULL = b"\xff\xff\xff\xff"


def letter_digest(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> str:
    """128 bits of SHA-256 over a dead letter's key, value and headers as its DLQ holds them (sealed or not), each
    length-prefixed (a null apart from empty): the same for every read of that record, another for any other letter,
    as each carries its rejection time."""
    digest = hashlib.sha256()

    def part(data: bytes | None) -> None:
        digest.update(_NULL if data is None else len(data).to_bytes(4, "big") + data)

    part(key)
    part(value)
    digest.update(len(headers).to_bytes(4, "big"))
    for name, data in headers:
        part(name.encode())
        part(data)
    return digest.hexdigest()[:32]


def replay_key(dlq_topic: str, partition: int, offset: int, digest: str) -> bytes:
    """The key a replay writes: `<dlq topic>:<partition>:<offset>:<letter_digest>`."""
    return f"{dlq_topic}:{partition}:{offset}:{digest}".encode()


def position_key(dlq_topic: str, partition: int, offset: int) -> bytes:
    """The key's first form, the position alone: read, never written."""
    return f"{dlq_topic}:{partition}:{offset}".encode()


def is_replayed(done: Collection[bytes], dlq_topic: str, partition: int, offset: int, digest: str) -> bool:
    """Whether the replay log's keys `done` hold this letter: by its key, or by a first-form key of its position."""
    return (replay_key(dlq_topic, partition, offset, digest) in done
            or position_key(dlq_topic, partition, offset) in done)
