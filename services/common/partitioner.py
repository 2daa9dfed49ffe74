"""Which partition a key lands in: the Java client's default partitioner (murmur2), as every Kafka client keys.

Every commune-keyed topic is partitioned this way, so a service can tell which
partition (and so which worker) holds a commune. The partition count is always
the topic's real one, read from the cluster's metadata, never assumed.

The hash is MurmurHash2 in native code (the `murmurhash2` package) with Kafka's seed: aiokafka's own
`murmur2` is pure Python, 34 µs for an 89-byte key (a data key's record key, one per new applicant; intake
writes one with most dossier events) against 0.3 µs here. `Partitioner` gives every producer of
`services.common.clients` the same placement as aiokafka's `DefaultPartitioner` at that speed; tests hold
both equal to aiokafka's (and Kafka's own test vectors).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

from murmurhash2 import murmurhash2

KAFKA_SEED: Final = 0x9747B28C
"""The seed of `org.apache.kafka.common.utils.Utils.murmur2`."""


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 of `key`, as an unsigned 32-bit number."""
    return murmurhash2(key, KAFKA_SEED)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of `key` in a topic of `partitions` partitions (murmur2 made positive, as the Java client does)."""
    return (murmurhash2(key, KAFKA_SEED) & 0x7FFFFFFF) % partitions


class Partitioner:
    """aiokafka's `DefaultPartitioner` (a producer's `partitioner=`) with the native hash: a keyed record goes
    to `murmur2(key) % len(all_partitions)`, an unkeyed one to a random available partition (any, if none is)."""

    def __call__(self, key: bytes | bytearray | memoryview | None, all_partitions: Sequence[int],
                 available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)  # spreading load, not security
        # bytes(): a serialised key may be a bytearray or memoryview, which the native hash refuses (a bytes key is
        # passed as it is, not copied)
        return all_partitions[(murmurhash2(bytes(key), KAFKA_SEED) & 0x7FFFFFFF) % len(all_partitions)]


PARTITIONER: Final = Partitioner()
