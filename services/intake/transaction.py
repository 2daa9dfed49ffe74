"""Publishing one task's transaction: its outputs and its input offsets, committed atomically, then its metrics.

A transaction's canonical records, dead letters, re-routed raw records,
de-duplication changelog records and consumed offsets are committed together:
`read_committed` consumers see all of them or none. Every send is checked before
the commit (aiokafka would commit a transaction whose batch failed, leaving the
record consumed but never produced): one failed send aborts the transaction and
raises `SendFailed`. The offsets carry the consumer group's generation (KIP-447,
`services.common.kip447`): a worker that lost its partitions meanwhile gets
`GroupFenced`; a producer replaced by a newer one with its transactional id gets
`ProducerFenced`. Each ends the transaction with nothing of it visible.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer

from services.common import kip447, transactions
from services.common.closing import retrieved
from services.intake import telemetry
from services.intake.outputs import TransactionOutputs

SendFailed, is_fenced = transactions.SendFailed, transactions.is_fenced


async def publish(producer: AIOKafkaProducer, out: TransactionOutputs, group: kip447.GroupMetadata) -> None:
    """Send everything in `out` and commit it with its input offsets, in one transaction; abort if a send failed."""
    started = time.perf_counter()
    async with transactions.transaction(producer):  # an exception inside aborts (unless the producer is fenced: dead)
        sent = await out.flush()
        for future in sent:  # retrieved even when the transaction fails before they are gathered
            future.add_done_callback(retrieved)
        await kip447.send_offsets_to_transaction(producer, out.offsets, group)
        await transactions.all_sent(sent)
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
    for family, n in out.rerouted.items():
        telemetry.RECORDS_IN.labels(family.value).inc(n)
        telemetry.REROUTED.labels(family.value).inc(n)
    telemetry.DEDUP_IDS.set(dedup_ids)
