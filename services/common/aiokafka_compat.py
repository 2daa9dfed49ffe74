"""Work-arounds inside aiokafka (besides KIP-447's, `kip447`), pinned to the version they were written for.

- aiokafka retries the first AddPartitionsToTxn of a transaction that meets
  CONCURRENT_TRANSACTIONS (the previous transaction's markers still being written,
  KAFKA-5477) after a fixed 20 ms (`aiokafka.producer.sender.BACKOFF_OVERRIDE`).
  The Java client waits min(20 ms, retry.backoff.ms); `apply` makes aiokafka do the
  same, which on loopback keeps intake's raw -> canonical latency near the
  exactly-once floor.
- An abortable error (the group refusing a transaction's offsets, KIP-447; a
  refused AddPartitionsToTxn) makes aiokafka forget the partitions and the group
  its transaction already holds on the broker. The abort that follows then finds
  the transaction empty and ends it locally, without EndTxn: the broker's
  transaction stays open, and the producer's next transaction commits what the
  refused one had sent along with its own. It also forgets the partitions still
  waiting to be added: their batches, no longer held back, go out outside the
  broker's transaction (partition verification is off, infra/kafka), where the
  producer's next transaction on that partition commits them.
  `keep_aborted_transactions` keeps both, so the abort reaches the broker and
  covers them (every transactional producer, `clients.transactional_producer`).

- aiokafka sends an offset commit as a shielded task (`GroupCoordinator.commit_offsets`). A commit its caller gives
  up on (a timeout: notify's, metrics', the deadline tracker's, while the broker does not answer) cancels the shield,
  which unhooks the task's only reader: when the request fails later, asyncio logs "Task exception was never
  retrieved" at ERROR (a broker frozen 45 s under notify: 7 such lines, `notify-broker-freeze`).
  `retrieve_cancelled_commits` marks the task's outcome retrieved; the caller has its own timeout to report.

- After a failed metadata update aiokafka's producer asks again at once while a
  partition's leader is unknown (its sender waits on nothing else): with the
  brokers gone, back to back. `pace_failed_metadata` waits the client's retry
  backoff after a failed update first, as the Java client waits
  `retry.backoff.ms` between metadata requests (every client, `clients`).

- aiokafka keeps no account of when a consumer's coordinator last answered that it is a member, and notices the
  session lost only once a heartbeat is answered: cut off from the broker, a heartbeat waits out its request timeout
  (40 s or more), and the consumer goes on as a member throughout. `track_heard` notes, on each group coordinator,
  when a heartbeat that was answered as a member's was sent, and when a join completed (`heard_at`): a consumer not
  heard for nearly a session may have been evicted (notify's fence, ADR 0046).

- A producer's sender that ends on a fatal error (`ProducerFenced`: a newer producer took its transactional id)
  returns without awaiting its produce requests in flight and fails every batch (`_fail_all`). A request that had
  failed retriably (its connection lost) puts its batch back after its back-off, though the batch was failed
  meanwhile: `MessageAccumulator.reenqueue` raised KeyError in a task nobody awaits ("Task exception was never
  retrieved", 3 of 10 chaos `intake-partition` runs). A failed batch's drain waiter, which only wakes a send
  waiting for room in the batch, kept the failure unread too ("Future exception was never retrieved"), though every
  send of the batch is told it. `settle_failed_batches` drops a failed batch instead of putting it back, and marks
  its drain waiter read.

- A transaction's offsets are added through a future that `send_offsets_to_transaction` awaits shielded. A caller
  that gives up (intake cancels a transaction stuck past its timeout) cancels the shield, which unhooks the future's
  only reader: when the group refuses those offsets later (`GroupFenced`, once a cut-off worker is healed) or the
  producer is fenced, asyncio logged "Future exception was never retrieved" at exit (chaos `intake-partition`, 2 of
  6 runs with the fixes above; found with PYTHONASYNCIODEBUG: the future created in `add_offsets_to_txn`).
  `retrieve_abandoned_offsets` marks its outcome read; the caller has its own error (`TransactionStuck`) to report.

`tests/common/test_aiokafka_compat.py` fails when the pinned version changes, so
whoever upgrades aiokafka re-checks this module.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiokafka
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.producer import sender
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch
from aiokafka.producer.transaction_manager import TransactionManager

from services.common.closing import retrieved

PINNED_VERSION = "0.14.0"


def pinned(module: str = "services/common/aiokafka_compat.py") -> None:
    """Refuse to patch an aiokafka the work-arounds of `module` were not checked against (its private names may
    differ)."""
    if aiokafka.__version__ != PINNED_VERSION:
        raise RuntimeError(f"aiokafka {aiokafka.__version__} is not the {PINNED_VERSION} this work-around was "
                           f"written for: check {module} against it")


def apply(retry_backoff_ms: int) -> None:
    """Retry CONCURRENT_TRANSACTIONS after min(20 ms, `retry_backoff_ms`), as the Java client does."""
    pinned()
    sender.BACKOFF_OVERRIDE = min(sender.BACKOFF_OVERRIDE, retry_backoff_ms / 1000)


def _error_transaction(self: Any, exc: BaseException) -> None:
    """aiokafka's `TransactionManager.error_transaction`, keeping the partitions and the consumer group the broker's
    transaction holds, so that the abort sends EndTxn (`Sender._do_txn_commit` skips it for a transaction it takes
    for empty). A CI run: an intake worker evicted while paused had its transaction refused; the records it had
    sent were committed by its next transaction, 46 records published twice. The partitions still waiting to be
    added are kept too (they stay held back, are added, and the abort covers them), except those of topics the
    broker refused (their sends fail): dropped, their batches went out outside the broker's transaction and the
    next transaction on the partition committed them (`tests/common/test_kip447_kafka.py`). The exception is marked
    retrieved on the transaction's waiter, which nobody awaits after an abort (asyncio logged "Future exception was
    never retrieved" for each refused transaction); the caller gets it from its own request, or from the commit."""
    added, group = set(self._txn_partitions), self._txn_consumer_group
    refused = _refused_topics(exc)
    pending = {tp for tp in self._pending_txn_partitions if tp.topic not in refused}
    if self._transaction_waiter.done():  # a second abortable error (a kept partition refused in turn)
        self._transaction_waiter = asyncio.get_running_loop().create_future()
    _original_error_transaction(self, exc)
    self._txn_partitions |= added
    self._pending_txn_partitions |= pending
    self._txn_consumer_group = group
    self._transaction_waiter.exception()


def _refused_topics(exc: BaseException) -> set[str]:
    """The topics an AddPartitionsToTxn was refused for (aiokafka raises them as the error's one argument)."""
    if not isinstance(exc, TopicAuthorizationFailedError) or not exc.args:
        return set()
    topics = exc.args[0]
    return {topics} if isinstance(topics, str) else {str(t) for t in topics}


_original_error_transaction = TransactionManager.error_transaction


def keep_aborted_transactions() -> None:
    """Make an abort after an abortable error abort the broker's transaction (idempotent). Raises on another aiokafka
    version: at a producer's creation, not when its first transaction is refused (the wrapper reads private names)."""
    pinned()
    setattr(TransactionManager, "error_transaction", _error_transaction)  # noqa: B010  (mypy: a method)


async def _paced_metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
    """aiokafka's `AIOKafkaClient._metadata_update`; after a failed one, a pause of the client's retry backoff
    (`retry_backoff_ms`, 100 ms) before its waiters hear of it. A producer holding a batch for a partition whose
    leader is unknown (a broker answered "no leader" as it shut down) asked again the moment each update failed, for
    as long as the brokers were gone: 3,300 failed updates a second on the secure broker, each failure logged twice
    (`tests/common/test_metadata_pacing_kafka.py`); a plain producer in that state on PLAINTEXT used a whole core (5.1 s
    of CPU in 5 s). In a CI run a test's traffic beside such a producer slowed from 5 to 3.6 events a second."""
    updated: bool = await _original_metadata_update(self, cluster_metadata, topics)
    if not updated:
        await asyncio.sleep(self._retry_backoff)
    return updated


_original_metadata_update = getattr(AIOKafkaClient, "_metadata_update")  # noqa: B009  (private in aiokafka 0.14)


def pace_failed_metadata() -> None:
    """Make every aiokafka client wait its retry backoff after a failed metadata update (idempotent)."""
    pinned()
    setattr(AIOKafkaClient, "_metadata_update", _paced_metadata_update)  # noqa: B010


def _retrieved_commit(self: Any, assignment: Any, offsets: Any) -> asyncio.Task[Any]:
    """aiokafka's `GroupCoordinator._do_commit_offsets` as a task whose outcome is marked retrieved: its caller
    shields it, and a cancelled shield leaves nobody to read a failure that comes later."""
    task: asyncio.Task[Any] = asyncio.ensure_future(_original_do_commit_offsets(self, assignment, offsets))
    task.add_done_callback(retrieved)
    return task


_original_do_commit_offsets = getattr(GroupCoordinator, "_do_commit_offsets")  # noqa: B009  (private in aiokafka 0.14)


def retrieve_cancelled_commits() -> None:
    """Make a commit given up on by its caller fail quietly when its request fails later (idempotent)."""
    pinned()
    setattr(GroupCoordinator, "_do_commit_offsets", _retrieved_commit)  # noqa: B010


HEARD_AT = "_commune_heard_at"
"""The attribute `track_heard` sets on a group coordinator: monotonic seconds."""


async def _heard_heartbeat(self: Any) -> bool:
    """aiokafka's `GroupCoordinator._do_heartbeat`, noting when a heartbeat answered as a member's (no error, or a
    rebalance under way) was sent: the coordinator's session clock restarted no earlier."""
    sent = time.monotonic()
    member: bool = await _original_do_heartbeat(self)
    if member:
        setattr(self, HEARD_AT, sent)
    return member


async def _heard_join(self: Any, *args: Any) -> None:
    """aiokafka's `GroupCoordinator._on_join_complete`: the group has just answered with this member's assignment."""
    setattr(self, HEARD_AT, time.monotonic())
    await _original_on_join_complete(self, *args)


_original_do_heartbeat = getattr(GroupCoordinator, "_do_heartbeat")  # noqa: B009  (private in aiokafka 0.14)
_original_on_join_complete = getattr(GroupCoordinator, "_on_join_complete")  # noqa: B009


def track_heard() -> None:
    """Make every group coordinator note when its group last answered that it is a member (idempotent)."""
    pinned()
    setattr(GroupCoordinator, "_do_heartbeat", _heard_heartbeat)  # noqa: B010
    setattr(GroupCoordinator, "_on_join_complete", _heard_join)  # noqa: B010


def heard_at(consumer: Any) -> float | None:
    """When `consumer`'s group last answered that it is a member (monotonic seconds; None: never, or not tracked)."""
    at = getattr(getattr(consumer, "_coordinator", None), HEARD_AT, None)
    return at if isinstance(at, float) else None


def _reenqueue(self: Any, batch: Any) -> None:
    """aiokafka's `MessageAccumulator.reenqueue`, unless the batch was failed while its request backed off (the sender
    died: `_fail_all`): its sends were told, and its done callback takes it out of the pending ones, whether it has
    run yet or not (taking it out here too raised KeyError in that callback when it ran after: review)."""
    if batch.future.done():
        return
    _original_reenqueue(self, batch)


def _failure(self: Any, exception: BaseException) -> None:
    """aiokafka's `MessageBatch.failure`, with the drain waiter's copy of the failure marked read: each send of the
    batch has it in its own future."""
    _original_failure(self, exception)
    retrieved(self._drain_waiter)


_original_reenqueue = MessageAccumulator.reenqueue
_original_failure = MessageBatch.failure


def settle_failed_batches() -> None:
    """Make a failed batch stay failed, its drain waiter read (idempotent; every producer, `clients.producer`)."""
    pinned()
    setattr(MessageAccumulator, "reenqueue", _reenqueue)  # noqa: B010  (mypy: a method)
    setattr(MessageBatch, "failure", _failure)  # noqa: B010


def _add_offsets_to_txn(self: Any, offsets: Any, group_id: str) -> asyncio.Future[None]:
    """aiokafka's `TransactionManager.add_offsets_to_txn`, its future's outcome marked read once it ends."""
    future: asyncio.Future[None] = _original_add_offsets_to_txn(self, offsets, group_id)
    future.add_done_callback(retrieved)
    return future


_original_add_offsets_to_txn = TransactionManager.add_offsets_to_txn


def retrieve_abandoned_offsets() -> None:
    """Make offsets whose caller gave up fail quietly when refused later (idempotent; every transactional producer)."""
    pinned()
    setattr(TransactionManager, "add_offsets_to_txn", _add_offsets_to_txn)  # noqa: B010
