"""The latency floor of exactly-once on this broker: aiokafka's transactional consume-produce-commit loop.

No validation, no group commit, nothing but what an exactly-once forwarder needs: each fetched
batch is forwarded as it is (same key, value and headers) inside one transaction together with its
input offsets. `bench_intake` times it raw -> output beside the intake service, on the same stream.
Run as `python -m bench.eos_forward` with KAFKA_BOOTSTRAP, BENCH_RAW, BENCH_OUT and BENCH_APP set;
SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.common import aiokafka_compat, clients
from services.common.settings import KafkaConnection
from services.intake.worker import RETRY_BACKOFF_MS


async def main() -> None:
    aiokafka_compat.apply(RETRY_BACKOFF_MS)  # intake's 1 ms CONCURRENT_TRANSACTIONS retry, as in the service
    bootstrap, raw, out, app = (os.environ[k] for k in ("KAFKA_BOOTSTRAP", "BENCH_RAW", "BENCH_OUT", "BENCH_APP"))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    options = clients.connection_options(KafkaConnection(bootstrap=bootstrap))  # TLS/SASL as KAFKA_* say
    producer = AIOKafkaProducer(**options, transactional_id=f"{app}.forward", linger_ms=0,
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    consumer = AIOKafkaConsumer(raw, **options, group_id=app, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest", fetch_max_wait_ms=5)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            if not batch:
                continue
            async with producer.transaction():
                for records in batch.values():
                    for rec in records:
                        await producer.send(out, rec.value, key=rec.key, headers=list(rec.headers))
                await producer.send_offsets_to_transaction(
                    {tp: records[-1].offset + 1 for tp, records in batch.items()}, app)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    uvloop.run(main())
