"""KIP-447 for aiokafka 0.14: transactional offset commits that carry the group's generation, stable offset reads.

aiokafka sends `TxnOffsetCommit` v0, without the consumer group's generation
and member id, and reads committed offsets without `require_stable`. The broker
then cannot refuse the commit of a worker that lost its partitions (paused past
its session timeout, evicted, its partitions given to another member), and the
new owner can read an offset while a transaction that moves it is still open:
either way records are published twice. The Java client fixed both in Kafka 2.5
(KIP-447); this module does the same for aiokafka, through its own request
classes (aiokafka's `Struct`/`Schema` types, in `kip447_requests`), pinned to the
aiokafka version it was written for (`aiokafka_compat.PINNED_VERSION`):

- `send_offsets_to_transaction(producer, offsets, consumer)` adds the offsets to
  the producer's transaction with `TxnOffsetCommit` v3 (generation id, member id,
  group instance id). A member that is no longer in that generation gets
  ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID from the group
  coordinator: the transaction becomes abortable and `GroupFenced` is raised, so
  nothing the transaction wrote becomes visible. A consumer whose generation is
  unknown (after an eviction, before it rejoins) is refused here, without asking
  the broker (which would take a generation of -1 as a commit from outside the
  group).
- `fetch_stable_offsets(consumer, partitions)` reads committed offsets with
  `OffsetFetch` v7 and `require_stable`: while a transaction with offsets for a
  partition is open, the coordinator answers UNSTABLE_OFFSET_COMMIT and the read
  is retried until that transaction commits or aborts.

`apply()` (called by `aiokafka_compat.apply`) routes aiokafka's transactional
offset commit through the v3 request when the producer was given group
metadata; other transactional producers keep aiokafka's own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as Errors
from aiokafka.client import ConnectionGroup
from aiokafka.producer import sender

from services.common.kip447_requests import OffsetFetchStable, TxnOffsetCommitV3

ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID = 22, 25, 82
UNSTABLE_OFFSET_COMMIT = 88
COORDINATOR_RETRY = {14, 15, 16}  # load in progress, not available, not coordinator
GROUP_METADATA = "_commune_group_metadata"
"""The attribute of aiokafka's transaction manager that carries the metadata of the pending offset commit."""


class GroupFenced(Errors.KafkaError):
    """The group coordinator refused a transactional offset commit: this member no longer owns those partitions."""


@dataclass(frozen=True)
class GroupMetadata:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None

    @classmethod
    def of(cls, consumer: AIOKafkaConsumer) -> GroupMetadata:
        """The consumer's group, generation and member id now (aiokafka keeps them in its group coordinator)."""
        coordinator: Any = getattr(consumer, "_coordinator")  # noqa: B009  (no public accessor in aiokafka 0.14)
        return cls(coordinator.group_id, coordinator.generation, coordinator.member_id,
                   getattr(coordinator, "_group_instance_id", None))


def known_member(consumer: AIOKafkaConsumer) -> bool:
    """The consumer holds a generation of its group: it joined, and its coordinator has not answered since that it is
    no member (aiokafka resets the generation at that answer, before a revocation reaches the listener)."""
    group = GroupMetadata.of(consumer)
    return group.generation_id >= 0 and bool(group.member_id)


class _TxnOffsetCommitHandler(sender.TxnOffsetCommitHandler):
    """aiokafka's handler with the v3 request; a generation refused makes the transaction abortable (GroupFenced)."""

    def __init__(self, snd: Any, offsets: Any, group_id: str, group: GroupMetadata) -> None:
        super().__init__(snd, offsets, group_id)
        self._group = group

    def create_request(self) -> TxnOffsetCommitV3:
        txn = self._sender._txn_manager
        return TxnOffsetCommitV3(txn.transactional_id, txn.producer_id, txn.producer_epoch, self._group,
                                 self._offsets)

    def handle_response(self, resp: Any) -> float | None:
        txn = self._sender._txn_manager
        for _topic, partitions, _ in resp.topics:
            for _partition, code, _ in partitions:
                if code in (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID):
                    txn.error_transaction(GroupFenced(
                        f"group {self._group_id} refused the offsets of generation {self._group.generation_id} "
                        f"(error {code}): the partitions belong to another member now"))
                    return None
        # everything else as aiokafka handles it (errors per partition, retries, fencing by epoch)
        legacy = type("Legacy", (), {"errors": [(t, [(p, c) for p, c, _ in parts]) for t, parts, _ in resp.topics]})
        result: float | None = super().handle_response(legacy)
        return result


async def _do_txn_offset_commit(self: Any, offsets: Any, group_id: str) -> None:
    """`Sender._do_txn_offset_commit`, with the v3 handler when the transaction carries group metadata."""
    group: GroupMetadata | None = getattr(self._txn_manager, GROUP_METADATA, None)
    if group is None or group.group_id != group_id:
        await _original_do_txn_offset_commit(self, offsets, group_id)
        return
    if not offsets:
        return
    try:
        node_id = await self._find_coordinator(sender.CoordinationType.GROUP, group_id)
    except Errors.GroupAuthorizationFailedError as exc:
        self._txn_manager.error_transaction(exc)
        return
    await _TxnOffsetCommitHandler(self, offsets, group_id, group).do(node_id)


_original_do_txn_offset_commit = sender.Sender._do_txn_offset_commit


def apply() -> None:
    """Route aiokafka's transactional offset commits through `_do_txn_offset_commit` (idempotent)."""
    setattr(sender.Sender, "_do_txn_offset_commit", _do_txn_offset_commit)  # noqa: B010  (mypy: a method)


def _txn_manager(producer: AIOKafkaProducer) -> Any:
    return getattr(producer, "_txn_manager")  # noqa: B009  (private in aiokafka 0.14)


async def send_offsets_to_transaction(producer: AIOKafkaProducer, offsets: Mapping[TopicPartition, int],
                                      group: GroupMetadata) -> None:
    """Add `offsets` to the producer's open transaction as of `group`'s generation (`GroupMetadata.of(consumer)`
    when the records were consumed; KIP-447).

    Raises `GroupFenced` when the generation is unknown (evicted, not yet rejoined) or when the coordinator
    refuses it; the transaction must then be aborted (leaving `producer.transaction()` with the exception does
    that).
    """
    apply()
    if group.generation_id < 0 or not group.member_id:
        raise GroupFenced(f"group {group.group_id}: generation unknown (evicted or rejoining), nothing committed")
    setattr(_txn_manager(producer), GROUP_METADATA, group)
    try:
        await producer.send_offsets_to_transaction(dict(offsets), group.group_id)
    finally:
        setattr(_txn_manager(producer), GROUP_METADATA, None)


class UnstableOffsets(Errors.KafkaError):
    """Committed offsets could not be read stable within the caller's wait: a transaction held them open, or no
    group coordinator answered (the broker gone)."""


async def fetch_stable_offsets(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition],
                               timeout_s: float, backoff_s: float = 0.05) -> dict[TopicPartition, int | None]:
    """The committed offsets of `partitions` (None: nothing committed), once no open transaction moves them; raises
    `UnstableOffsets` after `timeout_s`, whatever it was waiting for (aiokafka looks for a coordinator for ever)."""
    wanted = sorted(set(partitions))
    if not wanted:
        return {}
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch_stable_offsets(consumer, wanted, backoff_s)
    except TimeoutError:
        raise UnstableOffsets(f"committed offsets of {len(wanted)} partitions not read stable within {timeout_s:g} s "
                              "(a transaction holding them open, or no coordinator)") from None


async def _fetch_stable_offsets(consumer: AIOKafkaConsumer, wanted: list[TopicPartition],
                                backoff_s: float) -> dict[TopicPartition, int | None]:
    coordinator: Any = getattr(consumer, "_coordinator")  # noqa: B009  (private in aiokafka 0.14)
    client: Any = getattr(consumer, "_client")  # noqa: B009
    while True:
        await coordinator.ensure_coordinator_known()
        try:
            resp = await client.send(coordinator.coordinator_id, OffsetFetchStable(coordinator.group_id, wanted),
                                     group=ConnectionGroup.COORDINATION)
        except Errors.KafkaError as exc:
            if not exc.retriable:
                raise
            coordinator.coordinator_dead()
            resp = None
        codes = {resp.error_code} | {p[4] for _, ps, _ in resp.topics for p in ps} if resp is not None else {-1}
        if codes <= {0}:
            assert resp is not None
            return {TopicPartition(topic, p[0]): (p[1] if p[1] >= 0 else None)
                    for topic, ps, _ in resp.topics for p in ps}
        if codes & COORDINATOR_RETRY:
            coordinator.coordinator_dead()
        elif not codes <= {0, -1, UNSTABLE_OFFSET_COMMIT}:
            raise Errors.for_code(max(codes))(f"OffsetFetch of group {coordinator.group_id}: errors {sorted(codes)}")
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, 1.0)
