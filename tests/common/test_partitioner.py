"""services/common/partitioner.py places keys exactly as aiokafka's (and the Java client's) default partitioner.

aiokafka's pure-Python `murmur2` and `DefaultPartitioner` are the oracle of the native hash."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import clients
from services.common.partitioner import PARTITIONER, murmur2, partition_for
from services.common.settings import KafkaConnection

pytestmark = pytest.mark.unit

DEFAULT = DefaultPartitioner()


def test_commune_codes_land_where_aiokafka_puts_them() -> None:
    """5-digit commune codes across the whole range, for 1 to 12 partitions and a few larger counts, agree."""
    for partitions in [*range(1, 13), 16, 24, 32, 64, 100]:
        everything = list(range(partitions))
        for code in range(0, 100_000, 37):
            key = f"{code:05d}".encode()
            assert partition_for(key, partitions) == DEFAULT(key, everything, everything), (key, partitions)


@settings(deadline=None)  # a busy CI machine must not turn a slow example into a failure
@given(key=st.binary(min_size=0, max_size=64), partitions=st.integers(min_value=1, max_value=10_000))
def test_any_key_lands_where_aiokafka_puts_it(key: bytes, partitions: int) -> None:
    """For arbitrary bytes and partition counts the two partitioners agree."""
    everything = list(range(partitions))
    assert partition_for(key, partitions) == DEFAULT(key, everything, everything)
    assert PARTITIONER(key, everything, everything[:1]) == DEFAULT(key, everything, everything[:1])
    shuffled = everything[::-1]  # aiokafka passes the metadata's list: the index is into it, whatever its order
    for spelled in (bytearray(key), memoryview(key)):  # a serialiser may return either
        assert PARTITIONER(spelled, shuffled, []) == DEFAULT(key, shuffled, [])


@settings(deadline=None)
@given(key=st.binary(min_size=0, max_size=300))
def test_the_native_hash_is_aiokafkas(key: bytes) -> None:
    """Every length (each tail of 0-3 bytes, data keys' 89-byte record keys and longer) hashes as aiokafka's does."""
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF


@settings(deadline=None)
@given(all_partitions=st.integers(min_value=1, max_value=64), data=st.data())
def test_an_unkeyed_record_goes_to_an_available_partition(all_partitions: int, data: st.DataObject) -> None:
    """As aiokafka's default: a random one of the available partitions, of all of them when none is available."""
    everything = list(range(all_partitions))
    available = data.draw(st.lists(st.sampled_from(everything), unique=True))
    assert PARTITIONER(None, everything, available) in (available or everything)


async def test_every_producer_of_the_services_places_keys_with_it() -> None:
    """`clients.producer` (and so every transactional producer) is built with the native partitioner (not started)."""
    producer = clients.producer(KafkaConnection(bootstrap="127.0.0.1:9"), client_id="t")
    try:
        assert vars(producer)["_partitioner"] is PARTITIONER
    finally:
        await producer.stop()


@pytest.mark.parametrize(("key", "java"), [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_is_the_java_clients(key: bytes, java: int) -> None:
    """The hash matches Kafka's own test vectors (UtilsTest.testMurmur2), so Java producers agree too."""
    assert aiokafka_murmur2(key) & 0xFFFFFFFF == java & 0xFFFFFFFF
    assert murmur2(key) == java & 0xFFFFFFFF
    assert partition_for(key, 6) == (java & 0x7FFFFFFF) % 6
