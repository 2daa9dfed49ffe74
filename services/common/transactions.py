"""A transaction's sends, checked: aiokafka commits a transaction even when a send inside it failed.

Every writer of a transaction (intake's outputs, metrics' changelog writers) gathers the futures of its
sends before committing and calls `all_sent`: one failure raises, so leaving `producer.transaction()` with
it aborts, and nothing of the transaction becomes visible. A fenced producer's failure is raised as it is
(`is_fenced`): the caller gives the work up rather than retrying it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalOperation, InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.structs import RecordMetadata

from services.common import kip447
from services.common.logging import SafeMessage, error_fields
from services.common.permanent import PERMANENT

log = structlog.get_logger("runtime")


class SendFailed(SafeMessage, KafkaError):
    """A send of a transaction failed, so the transaction was aborted. The message names error types and counts
    only (`all_sent`), so it is logged."""


class TransactionLost(KafkaError):
    """The transaction ended under its sends: the broker aborted it (its timeout passed while the process was
    paused) and a newer epoch fenced the producer, so aiokafka refuses the next send with `IllegalOperation`
    ("not in transaction", a plain Exception that would crash the process). As a Kafka error the run ends and
    restarts with a new producer, like any other fenced producer's."""


@asynccontextmanager
async def transaction(producer: AIOKafkaProducer) -> AsyncIterator[None]:
    """`producer.transaction()` (an exception inside aborts it), with aiokafka's `IllegalOperation` raised as
    `TransactionLost`, and the failure of a producer that died under it read (`_read_fatal`)."""
    try:
        async with producer.transaction():
            yield
    except IllegalOperation as exc:
        _read_fatal(producer, exc)
        raise TransactionLost(f"the transaction ended under its sends ({exc})") from None
    except BaseException as exc:
        _read_fatal(producer, exc)
        raise
    _read_fatal(producer, None)


def _read_fatal(producer: AIOKafkaProducer, raised: BaseException | None) -> None:
    """A producer whose sender died (fenced: `ProducerFenced`) holds that error in its transaction's waiter, which
    aiokafka's transaction leaves unread when it ends in that state (no abort is possible): asyncio logged "Future
    exception was never retrieved" at exit, after the error had ended the run already (5 of 10 chaos
    `intake-partition` runs). Read here: quietly when the transaction raised it, from inside or from its commit or
    abort (or a copy: each send has its own), else logged as what it is, since nothing else says it."""
    txn: Any = getattr(producer, "_txn_manager", None)  # private in aiokafka 0.14 (pinned: aiokafka_compat)
    if not callable(fatal := getattr(txn, "is_fatal_error", None)) or not fatal():  # (a test's producer has none)
        return
    waiter: asyncio.Future[None] = txn.wait_for_transaction_end()
    if not waiter.done() or waiter.cancelled() or (failure := waiter.exception()) is None:
        return
    if failure is raised or (raised is not None and type(failure) is type(raised)):
        return
    log.warning("transaction.producer_failed", **error_fields(failure),
                raised=type(raised).__name__ if raised is not None else None)


def is_fenced(exc: BaseException) -> bool:
    """`exc` says that the partitions belong to another member now (KIP-447), or that a newer producer with the same
    transactional id took over (or the transaction timed out)."""
    return isinstance(exc, kip447.GroupFenced | ProducerFenced | InvalidProducerEpoch)


async def all_sent(sent: Sequence[asyncio.Future[RecordMetadata]], failure: type[KafkaError] = SendFailed) -> None:
    """Wait for every send; raise a fenced failure as it is, any other as `failure` naming the error types."""
    results = await asyncio.gather(*sent, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if not failed:
        return
    for exc in failed:
        if is_fenced(exc) or isinstance(exc, PERMANENT):  # the process ends on the latter: no restart mends it
            raise exc
    names = sorted({type(exc).__name__ for exc in failed})
    raise failure(f"{len(failed)} of {len(sent)} sends failed ({', '.join(names)}): transaction aborted")
