"""What intake's shell calls to keep personal data sealed (ADR 0015): one object per worker run.

    privacy = IntakePrivacy(settings, PrivacySettings(), client_id="commune-bus-intake")
    await privacy.start(supervisor.spawn)           # keys read to the end, then followed (erasures, confirmations)
    Decider(..., keyring=privacy.keyring)           # accepted dossier events come out sealed, with `keys`
    for topic, key, value in privacy.key_messages(accepted.keys): ...       # in the event's transaction
    letter, keys = privacy.seal_dead_letter(key, value, headers, context)   # before writing a dead letter
    await privacy.stop()

The key store must follow the key topics for the whole run: a tombstone must reach the keyring before
the next event of that applicant is sealed, or that event would be sealed under a destroyed key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from schemas.deadletter import DeadLetterContext
from schemas.personal import KeyRecord
from schemas.topics import KEYS_APPLICANTS, KEYS_DEAD_LETTERS, TopicSpec, scoped
from services.common.settings import KafkaConnection
from services.privacy.deadletters import Headers, SealedDeadLetter, seal_dead_letter
from services.privacy.keyring import Keyring
from services.privacy.settings import PrivacySettings
from services.privacy.store import KeyMessage, KeyStore, key_messages


class Spawn(Protocol):
    """Starts a task someone owns (`Supervisor.spawn`): the key store's failure must end the run."""

    def __call__(self, name: str, coro: Coroutine[Any, Any, None], /) -> asyncio.Task[None]: ...


def key_topic_specs(namespace: str) -> list[TopicSpec]:
    """The key topics a writer of sealed records needs (add them to its `ensure_topics`)."""
    return [scoped(KEYS_APPLICANTS, namespace), scoped(KEYS_DEAD_LETTERS, namespace)]


class IntakePrivacy:
    def __init__(self, conn: KafkaConnection, namespace: str, privacy: PrivacySettings, *, client_id: str) -> None:
        self.namespace, self.retention_days = namespace, privacy.dead_letter_retention_days
        # keys on disk, the ones used last in memory (ADR 0034)
        self.keyring: Keyring = privacy.service_keyring(f"{namespace}-{client_id}")
        self.store = KeyStore(conn, namespace, self.keyring, client_id=f"{client_id}-keys")
        self._task: asyncio.Task[None] | None = None

    async def start(self, spawn: Spawn) -> None:
        await self.store.start()
        self._task = spawn("key-store", self.store.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.store.stop()
        finally:
            self.keyring.close()

    def key_messages(self, records: Sequence[KeyRecord]) -> list[KeyMessage]:
        """(topic, key, value) of each key record, to send in the transaction of the records sealed under them."""
        return key_messages(list(records), self.namespace)

    def seal_dead_letter(self, key: bytes | None, value: bytes | None, headers: Headers, context: DeadLetterContext,
                         written_at: datetime | None = None) -> tuple[SealedDeadLetter, list[KeyMessage]]:
        """The rejected record sealed whole (ADR 0026), and the key messages to send with it; `written_at`: when the
        record was written to Kafka (before its applicant's erasure: sealed already erased, ADR 0042)."""
        sealed = seal_dead_letter(
            self.keyring, key, value, headers, source_topic=context.source_topic, partition=context.source_partition,
            offset=context.source_offset, rejected_on=_day(context.rejected_at), retention_days=self.retention_days,
            written_at=written_at)
        return sealed, self.key_messages(sealed.keys)


def _day(rejected_at: str) -> date:
    try:
        return datetime.fromisoformat(rejected_at).date()
    except ValueError:
        return datetime.now(UTC).date()
