"""Record batches as any Kafka client may write them, built by hand: header names of any bytes (librdkafka and kcat
send a name as given; aiokafka's producer only writes UTF-8), written to a real broker with a produce request of
their own (the broker appends a batch without reading its header names, ADR 0050)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.codec import gzip_encode
from aiokafka.errors import LeaderNotAvailableError, NotLeaderForPartitionError, UnknownTopicOrPartitionError
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c, encode_varint

from services.common import clients
from services.common.settings import KafkaConnection

RawRecord = tuple[bytes | None, bytes | None, Sequence[tuple[bytes, bytes | None]]]
"""key, value, headers whose names are bytes"""
NO_CODEC, GZIP = 0, 1
_HEADER = struct.Struct(">qiibIhiqqqhii")
"""A v2 batch's header: base offset, length of the rest, leader epoch, magic, CRC-32C (of everything after it),
attributes, last offset delta, first and max timestamp, producer id, epoch, base sequence, record count."""
_CRC_AT, _ATTRIBUTES_AT = 17, 21
RETRIABLE = (NotLeaderForPartitionError.errno, UnknownTopicOrPartitionError.errno, LeaderNotAvailableError.errno)


def _varint(value: int) -> bytes:
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


def _sized(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def _record(offset: int, key: bytes | None, value: bytes | None,
            headers: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    """One record of a v2 batch (Kafka's DefaultRecord): attributes, timestamp delta 0, offset delta, key, value,
    headers, each name's bytes as given."""
    body = b"".join([b"\x00", _varint(0), _varint(offset), _sized(key), _sized(value), _varint(len(headers)),
                     *(_sized(name) + _sized(header_value) for name, header_value in headers)])
    return _varint(len(body)) + body


def batch(records: Sequence[RawRecord], compression: int = NO_CODEC, timestamp_ms: int | None = None) -> bytes:
    """One v2 record batch of `records` (offsets from 0; the broker gives them theirs), no producer id, laid out
    as Kafka's `DefaultRecordBatch` lays it out."""
    at = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    body = b"".join(_record(offset, *record) for offset, record in enumerate(records))
    if compression != NO_CODEC:
        assert compression == GZIP, "only gzip is installed"
        body = gzip_encode(body)
    data = bytearray(_HEADER.size) + body
    _HEADER.pack_into(data, 0, 0, len(data) - 12, -1, 2, 0, compression, len(records) - 1, at, at, -1, -1, -1,
                      len(records))
    struct.pack_into(">I", data, _CRC_AT, calc_crc32c(bytes(data[_ATTRIBUTES_AT:])))
    return bytes(data)


async def write_batch(bootstrap: str, topic: str, partition: int, data: bytes) -> int:
    """Append the batch `data` to `topic`'s `partition` (acks=all) with a produce request of its own; its base
    offset. The connection is the project's (`clients.connection_options`: the secure broker's too)."""
    client = AIOKafkaClient(**clients.connection_options(KafkaConnection(bootstrap=bootstrap)), client_id="tests")
    await client.bootstrap()
    try:
        for _ in range(50):  # a topic just created: its leader may not be known yet (NOT_LEADER_OR_FOLLOWER)
            await client._wait_on_metadata(topic)
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            if leader is not None and leader >= 0:
                response = await client.send(leader, ProduceRequest(None, -1, 30_000, [(topic, [(partition, data)])]))
                (_, ((answered, error, offset, *_),)), = response.topics
                assert answered == partition
                if error == 0:
                    return int(offset)
                assert error in RETRIABLE, f"the broker refused the batch: error {error}"
            await asyncio.sleep(0.2)
            await client.force_metadata_update()
        raise AssertionError(f"no leader took the batch for {topic}/{partition}")
    finally:
        await client.close()
