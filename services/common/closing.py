"""Closing a client within a deadline, whatever the broker does.

An idempotent producer's `stop` waits for its unsent batches, and aiokafka never expires them while the broker
is gone (with idempotence on, `_can_retry` retries a batch for ever), so an unbounded `await producer.stop()`
keeps a SIGTERMed process alive for a whole outage; a consumer's `stop` can wait on its coordinator alike.
`close_within` gives each client `timeout_s`: the stop runs on to its end in the background (shielded, so a
cancelled caller does not cut it short half-way), and its outcome is retrieved, never left unobserved. `within`
bounds other waits on the broker alike (an acknowledgement, a transaction, whose abort waits for the broker too), and
`start_within` a producer's start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from services.common.logging import SafeMessage

log = structlog.get_logger("runtime")
CLOSE_TIMEOUT_S = 10.0
"""How long a client's stop may take before the process goes on without it."""
UNANSWERED_S = 60.0
"""How long `start_within` and `answered_within` wait for the broker unless told (an erasure, a key re-wrap)."""
T = TypeVar("T")
Abandoned = set[asyncio.Future[Any]]
"""Work `within` gave up on, still ending in the background: its owner cancels it again once it stops its client."""


async def close_within(service: str, client: str, stop: Callable[[], Awaitable[None]],
                       timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Run `stop()` for at most `timeout_s`; True if it finished cleanly. A stop that fails (the broker may be why we
    stop), takes too long or is cancelled is logged (`client.stop_failed`, the error's type) and left to finish; a
    caller cancelled meanwhile is cancelled, a stop that ended cancelled by itself is only a failed stop."""
    caller = asyncio.current_task()
    cancels = caller.cancelling() if caller is not None else 0  # already counted: a stop in a cancelled task's finally
    closing = asyncio.ensure_future(stop())
    try:
        await asyncio.wait_for(asyncio.shield(closing), timeout=timeout_s)
        clean = True
    except (TimeoutError, KafkaError, asyncio.CancelledError) as exc:
        log.warning("client.stop_failed", service=service, client=client, error=type(exc).__name__,
                    timeout_s=timeout_s)
        closing.add_done_callback(retrieved)
        clean = False
    # a caller cancelled meanwhile is cancelled, even when the stop ended (cancelled by itself: aiokafka cancels its
    # own futures when the broker is gone; or cleanly) in the same turn and `wait_for` gave that instead
    if caller is not None and caller.cancelling() > cancels:
        raise asyncio.CancelledError
    return clean


async def close_all_within(service: str, stops: list[tuple[str, Callable[[], Awaitable[None]]]],
                           timeout_s: float = CLOSE_TIMEOUT_S) -> list[bool]:
    """`close_within` for each client of `stops` (name, stop), all at once: a consumer's stop waits out a group join
    under way up to `timeout_s`, and two consumers of one group closed one after the other took twice that (notify,
    term audit: 10 s each)."""
    return list(await asyncio.gather(*(close_within(service, name, stop, timeout_s) for name, stop in stops)))


async def within(work: Awaitable[T], timeout_s: float, abandoned: Abandoned | None = None) -> T:
    """`work`'s outcome, or TimeoutError once it took `timeout_s`: `work` is then cancelled and left to end in the
    background, its outcome retrieved. Never waits for the cancelled work: a transaction cancelled mid-way aborts,
    and aiokafka's abort waits for the broker as long as it does not answer. `abandoned` holds such work until it
    ends, for its owner to cancel again (the gateway's publisher, once it drops the producer)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)
    except TimeoutError:
        if task.done() and not task.cancelled():  # ended in the very turn the wait did: its outcome stands
            return task.result()
        raise
    finally:
        if not task.done():  # timed out, or the caller cancelled
            task.cancel()
            task.add_done_callback(retrieved)
            if abandoned is not None:
                abandoned.add(task)
                task.add_done_callback(abandoned.discard)


def retrieved(future: asyncio.Future[Any]) -> None:
    """A done callback that reads a future's exception, so asyncio never reports it as never retrieved."""
    if not future.cancelled():
        future.exception()


class Unanswered(SafeMessage, KafkaTimeoutError):
    """A write the broker did not answer within its bound (`answered_within`)."""


class StartUnanswered(Unanswered):
    """A producer's start did not end within its bound (`start_within`)."""


async def answered_within(work: Awaitable[T], what: str, timeout_s: float | None = None, *,
                          asked_to_commit: Callable[[], bool] = lambda: False,
                          abandoned: Abandoned | None = None) -> T:
    """`work`'s outcome (a transaction, say), or `Unanswered` naming `what` once it waited `timeout_s` (`UNANSWERED_S`
    if None): `work` is then cancelled and left to end in the background (`within`, into `abandoned`). A transaction's
    sends are retried, and its end and its abort asked again, for as long as the broker does not answer: an erasure on
    a frozen broker waited for ever, cancelled too. Once `asked_to_commit()`, the message says it may have committed."""
    timeout_s = UNANSWERED_S if timeout_s is None else timeout_s
    try:
        return await within(work, timeout_s, abandoned)
    except TimeoutError:
        fate = ("its commit was asked for: it may have committed, whole" if asked_to_commit() else
                "given up: a transaction commits whole or not at all")
        raise Unanswered(f"{what}: no answer from the broker within {timeout_s:g} s ({fate})") from None


async def stop_writer(service: str, client: str, producer: AIOKafkaProducer,
                      abandoned: Abandoned) -> None:
    """Stop `producer` (`close_within`), then cancel again the work `answered_within` gave up on: a transaction's
    abort waiting for a broker its stopped producer no longer asks would wait for ever (the gateway kept one such task
    per erasure given up)."""
    await close_within(service, client, producer.stop)
    for task in list(abandoned):
        task.cancel()


async def start_within(service: str, client: str, producer: AIOKafkaProducer, timeout_s: float | None = None) -> None:
    """Start `producer`, or, once that took `timeout_s` (`UNANSWERED_S` if None), stop what it opened
    (`close_within`) and raise `StartUnanswered`; a start that fails is stopped alike, then raised. An idempotent or
    transactional producer's start asks for a producer id, and aiokafka asks again, without a word, for as long as the
    broker answers with an error it deems retriable: a broker whose `__transaction_state` cannot be made (fewer
    brokers than its replication factor) or whose coordinator is not available held `dlq replay` silent for ever,
    before its first record."""
    timeout_s = UNANSWERED_S if timeout_s is None else timeout_s
    try:
        await within(producer.start(), timeout_s)
    except BaseException as exc:
        await close_within(service, client, producer.stop)
        if isinstance(exc, TimeoutError):
            raise StartUnanswered(f"the broker gave the {client} no producer id within {timeout_s:g} s: "
                                  f"{_why_no_id(producer)}") from None
        raise


def _why_no_id(producer: AIOKafkaProducer) -> str:
    """A transactional producer's id comes from its transaction coordinator; an idempotent one's from any broker."""
    txn: Any = getattr(producer, "_txn_manager", None)  # private in aiokafka 0.14 (pinned: aiokafka_compat)
    if getattr(txn, "transactional_id", None) is not None:
        return ("its transaction coordinator is not available (a cluster short of the brokers its __transaction_state "
                "topic needs, or still loading it)")
    return "the broker stopped answering after the bootstrap, or its controller gives out no producer ids"
