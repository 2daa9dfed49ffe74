"""The namespace's one replay writer: `dlq replay` and `notify-dlq replay` re-drive dead letters in transactions.

Each re-driven record and its replay-log entry are written in one Kafka transaction (one transactional id per
namespace: two concurrent replays fence each other), so after a crash a dead letter is either replayed and logged, or
neither, and a later run skips everything in the log (ADR 0033). A broker that stops answering mid-transaction ends
the replay once the transaction has not ended for `kafka_io.ACK_STALL_S` (`Unacknowledged`): the transaction given up
commits whole or not at all, and the next replay's writer fences it before reading the log, so it is not written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from schemas.replay import DLQ_REPLAYED, is_replayed, replay_key
from schemas.topics import TransactionalId, scoped, transactional_id
from services.cli import kafka_io
from services.cli.deadletters import DeadLetter, redriven_headers
from services.cli.dlq import replayed_keys
from services.common import clients, transactions
from services.common.admin import ensure_topics
from services.common.closing import StartUnanswered, close_within, start_within
from services.common.settings import KafkaConnection

Progress = Callable[[int], None]
BATCH = 200
REPLAY_INSTANCE = "0"
"""The one replay writer of a namespace: a second replay started meanwhile fences the first."""
INTERRUPTED = ("interrupted: {replayed} of {todo} dead letters replayed; the transaction under way, if any, was "
               "aborted (or committed, if its commit was already asked for): run the command again to replay the rest "
               "(those the replay log holds are left)")
"""Said on Ctrl-C (exit 130), as `publish` says what it wrote: the replay ended with no word of what it did."""
RUN_AGAIN = ("run the command again once the broker answers: it replays only the dead letters the replay log does not "
             "hold, whatever became of the transaction given up")
"""What an operator is told to do after `Unacknowledged`."""


async def replay_writer(conn: KafkaConnection, namespace: str,
                        client_id: str) -> tuple[AIOKafkaProducer, str, set[bytes]]:
    """The namespace's one replay writer, started (`Unacknowledged` if the broker gave it no producer id within
    `kafka_io.ACK_STALL_S`), the replay log's name (the log created first: a listing made none), and the log's keys
    read once the writer is started. `dlq replay` and `notify-dlq replay` share the
    transactional id: starting it fenced any other replay's open transaction, and what one committed before is in the
    keys read after (review: a replay that read the log before another's commit replayed the same letters again)."""
    log = scoped(DLQ_REPLAYED, namespace)
    await ensure_topics(conn, [log])
    producer = clients.transactional_producer(
        conn, transactional_id=transactional_id(TransactionalId.DLQ_REPLAY, namespace, REPLAY_INSTANCE),
        client_id=client_id)
    try:  # a broker that gives no producer id held the replay for ever, silent, before its first record
        await start_within("commune-bus", "replay writer", producer, kafka_io.ACK_STALL_S)
    except StartUnanswered as exc:
        raise kafka_io.Unacknowledged(f"{exc}: nothing replayed") from None
    try:
        return producer, log.name, await replayed_keys(conn, namespace)
    except BaseException:
        await _stop(producer)
        raise


async def _stop(producer: AIOKafkaProducer) -> None:
    await close_within("commune-bus", "replay writer", producer.stop, kafka_io.STOP_TIMEOUT_S)


class Positioned(Protocol):
    """A dead letter: where it is on its DLQ and the digest of its bytes (what its replay-log key names)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def digest(self) -> str: ...


L = TypeVar("L", bound=Positioned)
Refused = Callable[[str, list[L]], None]
"""Told the topic the broker refused a write to mid-replay, and the letters going back to it, left unreplayed."""
Redrive = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]
"""What a replay writes for a letter: topic, value, key, headers."""


async def replay_each(conn: KafkaConnection, namespace: str, client_id: str, dlq_topic: str, letters: Sequence[L],
                      redrive: Callable[[L], Redrive], progress: Progress = lambda n: None,
                      refused: Refused[L] | None = None) -> list[L]:
    """Write each letter's re-drive and its replay-log entry, a transaction per `BATCH`, with the namespace's one
    replay writer (`dlq replay`, `notify-dlq replay`); letters the log holds once the writer has fenced any other
    replay are left out. Returns those written. A refused write aborts its transaction (SendFailed): its letters
    stay unreplayed (the log entry never commits without its re-drive). With `refused`, a topic this principal may
    not write (TopicAuthorizationFailedError naming a topic letters go back to: rights the broker could not tell
    beforehand, or revoked meanwhile) has its letters handed to it, unreplayed, and the others go on in a new
    transaction; without, it raises. A transaction not ended within `ACK_STALL_S` raises `Unacknowledged`, saying how
    many were replayed and how many may have been."""
    producer, log_topic, done = await replay_writer(conn, namespace, client_id)
    todo = [d for d in letters if not is_replayed(done, dlq_topic, d.partition, d.offset, d.digest)]
    written: list[L] = []
    try:
        while todo:
            chunk, todo = todo[:BATCH], todo[BATCH:]
            try:
                await kafka_io.acknowledged(
                    _transaction(producer, log_topic, dlq_topic, chunk, redrive),
                    f"{len(written)} of {len(written) + len(chunk) + len(todo)} dead letters replayed, the next "
                    f"{len(chunk)} perhaps (their transaction, given up, commits whole or not at all: each re-drive "
                    "with its replay-log entry), the rest not")
            except TopicAuthorizationFailedError as exc:  # the transaction was aborted: nothing of `chunk` written
                topic = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
                theirs = [d for d in (*chunk, *todo) if topic is not None and redrive(d)[0] == topic]
                if refused is None or topic is None or not theirs:
                    raise
                refused(topic, theirs)
                todo = [d for d in (*chunk, *todo) if redrive(d)[0] != topic]
                continue
            written += chunk
            progress(len(chunk))
    finally:
        await _stop(producer)
    return written


async def _transaction(producer: AIOKafkaProducer, log_topic: str, dlq_topic: str, chunk: Sequence[L],
                       redrive: Callable[[L], Redrive]) -> None:
    """Each letter's re-drive and its replay-log entry, in one transaction: committed if every send succeeded."""
    async with transactions.transaction(producer):
        sent = []
        for d in chunk:
            topic, value, key, headers = redrive(d)
            sent.append(await producer.send(topic, value, key=key, headers=headers))
            sent.append(await producer.send(log_topic, topic.encode(),
                                            key=replay_key(dlq_topic, d.partition, d.offset, d.digest)))
        await transactions.all_sent(sent)


async def replay(conn: KafkaConnection, namespace: str, letters: Iterable[DeadLetter], dlq_topic: str,
                 done: set[bytes], set_headers: dict[str, str], progress: Progress = lambda n: None,
                 refused: Refused[DeadLetter] | None = None) -> list[DeadLetter]:
    """Re-drive every intake dead letter not yet in the replay log into its original raw topic; returns those
    re-driven (`replay_each`: with `refused`, those of a topic the broker refuses are handed to it)."""
    todo = [d for d in letters if not is_replayed(done, dlq_topic, d.partition, d.offset, d.digest)]
    if not todo:
        return []

    def redrive(d: DeadLetter) -> Redrive:
        return d.context.source_topic, d.value, d.key, redriven_headers(d, set_headers)

    return await replay_each(conn, namespace, "commune-bus-dlq-replay", dlq_topic, todo, redrive, progress, refused)
