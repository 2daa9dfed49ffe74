"""A fenced producer leaves no failure unread for asyncio to report at exit: its transaction's waiter is read by
`transactions.transaction` (quietly when the transaction raised that failure, logged when nothing else said it), a
failed batch's drain waiter is read, and a batch failed while its request backed off is not put back (KeyError).
Chaos `intake-partition` logged "Future exception was never retrieved" (ProducerFenced) in 5 runs of 10 and "Task
exception was never retrieved" (KeyError in `reenqueue`) in 3."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, ProducerFenced
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch
from structlog.testing import capture_logs

from services.common import aiokafka_compat, transactions

pytestmark = pytest.mark.unit
TP = TopicPartition("t", 0)


@contextmanager
def unread_reports() -> Iterator[list[str]]:
    """What asyncio reports as never retrieved while inside (futures collected at the end)."""
    loop = asyncio.get_running_loop()
    told: list[str] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: told.append(f"{context['message']}: "
                                                             f"{type(context.get('exception')).__name__}"))
    try:
        yield told
        gc.collect()
    finally:
        loop.set_exception_handler(before)
    told[:] = [t for t in told if "never retrieved" in t]  # not "Unclosed AIOKafkaProducer": never started here


def fenced_producer() -> tuple[AIOKafkaProducer, Any]:
    """A transactional producer (never started: its pid set by hand) and its transaction manager."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", transactional_id="x", enable_idempotence=True)
    txn: Any = getattr(producer, "_txn_manager")  # noqa: B009
    txn.set_pid_and_epoch(1, 0)
    return producer, txn


def die_fenced(producer: AIOKafkaProducer, txn: Any) -> ProducerFenced:
    """What aiokafka's sender does when it ends on ProducerFenced (`Sender._fail_all`)."""
    fenced = ProducerFenced()
    getattr(producer, "_message_accumulator").fail_all(fenced)  # noqa: B009
    txn.fatal_error(fenced)
    return fenced


async def test_a_transaction_that_raised_the_fence_leaves_it_read_quietly() -> None:
    """The fence the transaction raised (as `send_offsets_to_transaction` does) is not reported again at exit."""
    with unread_reports() as told, capture_logs() as logs:
        producer, txn = fenced_producer()
        with pytest.raises(ProducerFenced):
            async with transactions.transaction(producer):
                raise die_fenced(producer, txn)
        del producer, txn
    assert told == []
    assert [e for e in logs if e["event"] == "transaction.producer_failed"] == []


async def test_a_fence_the_transaction_did_not_raise_is_logged_as_what_it_is() -> None:
    """A producer fenced under a transaction that failed otherwise: the fence is logged once, by name."""
    with unread_reports() as told, capture_logs() as logs:
        producer, txn = fenced_producer()
        with pytest.raises(transactions.SendFailed):
            async with transactions.transaction(producer):
                die_fenced(producer, txn)
                raise transactions.SendFailed("1 of 1 sends failed (KafkaTimeoutError): transaction aborted")
        del producer, txn
    assert told == []
    said = [e for e in logs if e["event"] == "transaction.producer_failed"]
    assert [(e["error"], e["raised"]) for e in said] == [("ProducerFenced", "SendFailed")]


async def test_a_fence_its_commit_raised_is_read_quietly() -> None:
    """The producer fenced while committing (EndTxn answered so: the fence reaches the caller from the commit) is
    neither reported at exit nor logged again (chaos: `transaction.producer_failed` said it with `raised` None)."""
    with unread_reports() as told, capture_logs() as logs:
        producer, txn = fenced_producer()
        with pytest.raises(ProducerFenced):
            async with transactions.transaction(producer):
                asyncio.get_running_loop().call_soon(die_fenced, producer, txn)  # while the commit waits
        del producer, txn
    assert told == []
    assert [e for e in logs if e["event"] == "transaction.producer_failed"] == []


def accumulator() -> MessageAccumulator:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    acc: MessageAccumulator = getattr(producer, "_message_accumulator")  # noqa: B009
    return acc


async def test_a_failed_batchs_drain_waiter_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch failed before it was drained: each send hears of it, the drain waiter is not reported unread."""
    monkeypatch.setattr(MessageBatch, "failure", aiokafka_compat._original_failure)
    aiokafka_compat.settle_failed_batches()
    with unread_reports() as told:
        acc = accumulator()
        sent = await acc.add_message(TP, None, b"v", timeout=5)
        acc.fail_all(ProducerFenced())
        assert isinstance(sent.exception(), ProducerFenced)
        del acc, sent
    assert told == []


@pytest.mark.parametrize("callback_first", [True, False], ids=["callback first", "retry first"])
async def test_a_batch_failed_while_backing_off_is_not_put_back(monkeypatch: pytest.MonkeyPatch,
                                                                callback_first: bool) -> None:
    """A produce request failed retriably, its batch failed meanwhile (the sender died): the retry drops it, no
    KeyError, whether the batch's done callback (which takes it out of the pending ones) ran before the retry or
    after it, in the same loop turn (review: taking it out in the retry too made that callback raise)."""
    monkeypatch.setattr(MessageAccumulator, "reenqueue", aiokafka_compat._original_reenqueue)
    aiokafka_compat.settle_failed_batches()
    aiokafka_compat.settle_failed_batches()  # idempotent
    loop = asyncio.get_running_loop()
    told: list[str] = []  # every report: a callback's KeyError is "Exception in callback", not "never retrieved"
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: told.append(f"{context['message']}: {context.get('exception')!r}"))
    try:
        acc = accumulator()
        sent = await acc.add_message(TP, None, b"v", timeout=5)
        batch = getattr(acc, "_pop_batch")(TP)  # noqa: B009  (drained into a produce request)
        batch.failure(KafkaConnectionError())
        if callback_first:
            await asyncio.sleep(0)  # its done callback: no longer pending
        acc.reenqueue(batch)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(before)
    assert TP not in getattr(acc, "_batches")  # noqa: B009
    assert batch not in getattr(acc, "_pending_batches")  # noqa: B009
    assert isinstance(sent.exception(), KafkaConnectionError)
    assert [t for t in told if not t.startswith("Unclosed AIOKafkaProducer")] == []  # (never started here)


async def test_offsets_refused_after_their_caller_gave_up_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction stuck adding its offsets is cancelled (intake's `TransactionStuck`: aiokafka's shield around the
    offsets' future is cancelled); the group refuses them once the worker is healed: the refusal, which nobody awaits
    any more, is not reported at exit."""
    from aiokafka.producer.transaction_manager import TransactionManager

    from services.common import kip447

    monkeypatch.setattr(TransactionManager, "add_offsets_to_txn", aiokafka_compat._original_add_offsets_to_txn)
    monkeypatch.setattr(TransactionManager, "error_transaction", TransactionManager.error_transaction)
    aiokafka_compat.keep_aborted_transactions()  # as every transactional producer (it reads the transaction's waiter)
    aiokafka_compat.retrieve_abandoned_offsets()
    aiokafka_compat.retrieve_abandoned_offsets()  # idempotent
    with unread_reports() as told:
        producer, txn = fenced_producer()
        await producer.begin_transaction()
        adding = asyncio.shield(txn.add_offsets_to_txn({TP: 5}, "g"))  # as `send_offsets_to_transaction` awaits it
        adding.cancel()  # the caller gave up
        await asyncio.sleep(0)  # the shield lets go of the offsets' future
        txn.error_transaction(kip447.GroupFenced("refused"))  # the group's answer, later
        del producer, txn, adding
    assert told == []
