"""Publishing one transaction: its outputs and its input offsets, committed atomically, then its metrics.

A transaction's canonical records, dead letters, de-duplication changelog
records and consumed offsets are committed together: `read_committed`
consumers see all of them or none. A failure raises (the transaction is
aborted, or fenced by the worker's successor) and ends the worker's run.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer

from services.intake import telemetry
from services.intake.outputs import TransactionOutputs


async def publish(producer: AIOKafkaProducer, out: TransactionOutputs, group_id: str) -> None:
    """Send everything in `out` and commit it with its input offsets, in one transaction."""
    started = time.perf_counter()
    async with producer.transaction():
        await out.flush()
        await producer.send_offsets_to_transaction(out.offsets, group_id)
    telemetry.TRANSACTION.observe(time.perf_counter() - started)


def observe(out: TransactionOutputs, dedup_ids: int) -> None:
    """Count a committed transaction's records by outcome, and each record's raw -> committed latency."""
    committed_ms = time.time() * 1000
    telemetry.BATCH.observe(out.records)
    for timestamp in out.timestamps:
        telemetry.LATENCY.observe(max(0.0, committed_ms - timestamp) / 1000)
    for (family, reason), n in out.outcomes.items():
        telemetry.RECORDS_IN.labels(family.value).inc(n)
        if reason is None:
            telemetry.RECORDS_OUT.labels(family.value).inc(n)
        else:
            telemetry.REJECTED.labels(family.value, reason.value).inc(n)
    telemetry.DEDUP_IDS.set(dedup_ids)
