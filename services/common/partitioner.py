"""Which partition a key lands in: the Java client's default partitioner (murmur2), as every Kafka client keys.

Every commune-keyed topic is partitioned this way, so a service can tell which
partition (and so which worker) holds a commune. The partition count is always
the topic's real one, read from the cluster's metadata, never assumed.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65536)
def key_hash(key: bytes) -> int:
    """murmur2 of the key, made positive as the Java client does; keys are commune codes, so few and cached."""
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of `key` in a topic of `partitions` partitions."""
    return key_hash(key) % partitions
