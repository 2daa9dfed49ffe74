"""The shell of `dlq list` / `dlq replay`: read the DLQ and the replay log, re-drive in transactions.

Each re-driven record and its replay-log entry are written in one Kafka
transaction (one transactional id per namespace: two concurrent replays fence
each other), so after a crash a dead letter is either replayed and logged, or
neither, and a later run skips everything in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from aiokafka import ConsumerRecord

from schemas import wire
from schemas.replay import DLQ_REPLAYED, replay_key
from schemas.topics import DLQ_INTAKE, TransactionalId, scoped, transactional_id
from services.cli.deadletters import DeadLetter, Filters, matches, readable, redriven_headers
from services.common import changelog, clients, transactions
from services.common.admin import ensure_topics, partition_counts
from services.common.settings import KafkaConnection
from services.privacy.crypto import Erased, PrivacyError
from services.privacy.deadletters import is_sealed, open_dead_letter
from services.privacy.settings import PrivacySettings
from services.privacy.store import KeyStore

Progress = Callable[[int], None]
Stored = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]
"""A record as read: partition, offset, key, value, headers (Kafka allows a header without a value)."""
BATCH = 200
CLIENT_ID = "commune-bus-dlq"
REPLAY_INSTANCE = "0"
"""The one replay writer of a namespace: a second replay started meanwhile fences the first."""


async def read_to_end(conn: KafkaConnection, topic: str) -> list[Stored]:
    """Every committed record of `topic` up to its end offsets at call time, in offset order per partition."""
    count = (await partition_counts(conn, [topic])).get(topic, 0)
    out: list[Stored] = []

    def keep(partition: int, rec: ConsumerRecord[bytes, bytes]) -> None:
        out.append((partition, rec.offset, rec.key, rec.value, list(rec.headers)))

    await changelog.read_to_end(conn, topic, range(count), keep, client_id=CLIENT_ID)
    return out


async def replayed_keys(conn: KafkaConnection, namespace: str) -> set[bytes]:
    """The replay log's keys; none while it does not exist (a listing creates no topic: an operator may not, and
    `dlq list` ended in TopicsNotCreated; `replay` creates it before its first transaction)."""
    log = scoped(DLQ_REPLAYED, namespace)
    return {key for _, _, key, _, _ in await read_to_end(conn, log.name) if key is not None}


class Listing(NamedTuple):
    topic: str
    letters: list[DeadLetter]
    """The dead letters matching the filters."""
    done: set[bytes]
    """The replay log's keys: which were already re-driven."""
    unreadable: int
    """Records of the DLQ not listed: no `dlq.*` headers as intake writes them, a reason this CLI does not know,
    or sealed and not openable for another reason than an erased key (altered bytes, an unknown layout)."""
    erased: int
    """Sealed dead letters whose key is gone (their applicant erased, or a day key past the retention): unreadable,
    neither listed nor replayed, whatever the filters; counted so that the operator is told."""


async def dead_letters(conn: KafkaConnection, namespace: str, filters: Filters) -> Listing:
    """The matching dead letters, with the replay log to tell which were already re-driven; one unreadable dead
    letter is counted and stops nothing."""
    dlq = scoped(DLQ_INTAKE, namespace).name
    done = await replayed_keys(conn, namespace)
    stored, unopened, erased = await opened(conn, namespace, await read_to_end(conn, dlq))
    letters, unreadable = readable(stored)
    return Listing(dlq, [d for d in letters if matches(d, filters)], done, unopened + unreadable, erased)


async def opened(conn: KafkaConnection, namespace: str, stored: list[Stored]) -> tuple[list[Stored], int, int]:
    """Dead letters as they arrived, each (partition, offset, original key, original value, original headers then
    intake's `dlq.*`): sealed ones opened with the key store (ADR 0015, 0026; needs PRIVACY_*), either layout; with
    how many could not be opened (malformed `dlq.source.*` headers, altered bytes, an unknown layout) and how many
    are erased (a key the key topic no longer holds: the applicant erased, or a day key past the retention). Both
    are left out: an erased one cannot be listed by its metadata or replayed.
    """
    if not any(is_sealed(headers) for *_, headers in stored):
        return stored, 0, 0
    keyring = PrivacySettings().keyring()  # PrivacyError (which variable is missing) if not configured
    store = KeyStore(conn, namespace, keyring, client_id=f"{CLIENT_ID}-keys")
    await store.start()
    await store.stop()
    out: list[Stored] = []
    unopened = erased = 0
    for partition, offset, key, value, headers in stored:
        if is_sealed(headers):
            h = {k: wire.lenient_text(v) for k, v in headers if k.startswith("dlq.source.")}
            try:
                letter = open_dead_letter(keyring, key, value, headers, source_topic=h.get("dlq.source.topic", ""),
                                          partition=int(h.get("dlq.source.partition", "-1")),
                                          offset=int(h.get("dlq.source.offset", "-1")))
            except Erased:
                erased += 1
                continue
            except (PrivacyError, ValueError):
                unopened += 1
                continue
            key, value, headers = letter.key, letter.value, letter.headers
        out.append((partition, offset, key, value, headers))
    return out, unopened, erased


async def replay(conn: KafkaConnection, namespace: str, letters: Iterable[DeadLetter], dlq_topic: str,
                 done: set[bytes], set_headers: dict[str, str],
                 progress: Progress = lambda n: None) -> list[DeadLetter]:
    """Re-drive every letter not yet in the replay log into its original raw topic; returns those re-driven."""
    todo = [d for d in letters if replay_key(dlq_topic, d.partition, d.offset) not in done]
    if not todo:
        return []
    log_topic = scoped(DLQ_REPLAYED, namespace).name
    await ensure_topics(conn, [scoped(DLQ_REPLAYED, namespace)])  # the log first (a listing made none)
    producer = clients.transactional_producer(
        conn, transactional_id=transactional_id(TransactionalId.DLQ_REPLAY, namespace, REPLAY_INSTANCE),
        client_id="commune-bus-dlq-replay",
    )
    await producer.start()
    try:
        for start in range(0, len(todo), BATCH):
            chunk = todo[start:start + BATCH]
            async with transactions.transaction(producer):
                sent = []
                for d in chunk:
                    sent.append(await producer.send(d.context.source_topic, d.value, key=d.key,
                                                    headers=redriven_headers(d, set_headers)))
                    sent.append(await producer.send(log_topic, d.context.source_topic.encode(),
                                                    key=replay_key(dlq_topic, d.partition, d.offset)))
                # a refused re-drive must not commit its replay-log entry (the letter would count as replayed)
                await transactions.all_sent(sent)
            progress(len(chunk))
    finally:
        await producer.stop()
    return todo
