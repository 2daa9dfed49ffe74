"""What intake does with a record the gateway publishes: its own validation (`Validation`, as a worker runs it on
a fetch, in memory), sealing applicants under the test keys or not at all, as intake's settings say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from schemas import wire
from schemas.events import Family
from schemas.topics import CANONICAL, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, MAX_RECORD_BYTES, RAW
from services.common.partitioner import partition_for
from services.intake.dedup import SeenByPartition
from services.intake.outputs import TransactionOutputs, record_bytes
from services.intake.settings import IntakeSettings
from services.intake.validate import Topics, Validation
from services.privacy.intake import IntakePrivacy
from tests.intake.fakes import Batch, Producer
from tests.privacy.keys import keyring

TOPICS = Topics.of("")
PARTITIONS = {**{t: RAW[f].partitions for t, f in TOPICS.family_of.items()},
              **{t: CANONICAL[f].partitions for f, t in TOPICS.canonical.items()},
              **{t.name: t.partitions for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS)}}


class KeysInMemory(IntakePrivacy):
    """Intake's privacy with the test keyring and no key store: the real sealing of events and dead letters."""

    def __init__(self) -> None:  # no super(): the key store it builds is never started here
        self.namespace, self.retention_days, self.keyring = "", 30, keyring()


@dataclass(frozen=True)
class Verdict:
    canonical_bytes: int | None = None
    """Published: the canonical record's size as intake measures it (`outputs.record_bytes`)."""
    reason: str | None = None
    """Dead-lettered: why (`dlq.reason`)."""


async def intake_verdict(record: wire.KafkaRecord, *, sealing: bool = True, **settings: Any) -> Verdict:
    """Intake's decision on `record`, published to the raw dossier topic keyed by its commune (as the gateway does),
    under intake's settings (defaults, or `settings`)."""
    topic = RAW[Family.DOSSIER].name
    home = partition_for(record.key, PARTITIONS[topic])
    out = TransactionOutputs(cast(AIOKafkaProducer, Producer()), PARTITIONS)
    raw = ConsumerRecord(topic, home, 0, 0, 0, record.key, record.value, None, 0, len(record.value), record.headers)
    validation = Validation(TOPICS, PARTITIONS, SeenByPartition(), IntakeSettings(**settings),
                            KeysInMemory() if sealing else None)
    await validation.partition(TopicPartition(topic, home), [raw], out)
    published = [wire.KafkaRecord(key, value, headers) for t, _, batch in out.batches
                 if t == TOPICS.canonical[Family.DOSSIER] for key, value, headers in cast(Batch, batch).records]
    letters = [dict(headers)["dlq.reason"].decode() for t, _, _, headers, _ in out.others if t == TOPICS.dlq]
    assert len(published) + len(letters) == 1, (published, letters)
    return Verdict(canonical_bytes=record_bytes(published[0])) if published else Verdict(reason=letters[0])


async def canonical_bytes(record: wire.KafkaRecord, *, sealing: bool = True) -> int:
    """The size of the canonical record intake makes of `record`, whatever its canonical limit."""
    verdict = await intake_verdict(record, sealing=sealing, max_canonical_bytes=MAX_RECORD_BYTES)
    assert verdict.canonical_bytes is not None, verdict
    return verdict.canonical_bytes
