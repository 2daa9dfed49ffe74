"""Publishing a transaction (`services.intake.transaction.publish`) on a fake producer: a failed send aborts it."""

from __future__ import annotations

from typing import cast

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from services.common import kip447
from services.intake import transaction
from services.intake.outputs import TransactionOutputs
from tests.intake.fakes import Producer

pytestmark = pytest.mark.unit

GROUP = kip447.GroupMetadata("t1.commune-bus.intake", generation_id=3, member_id="member-1")
RAW_TP = TopicPartition("t1.commune.raw.dossier", 0)


def outputs(producer: Producer) -> TransactionOutputs:
    """One canonical record (a batch send) and its de-duplication changelog record (a single send), consumed from
    `RAW_TP` at offset 7."""
    out = TransactionOutputs(cast(AIOKafkaProducer, producer), {"t1.commune.events.dossier": 6})
    out.batched("t1.commune.events.dossier", b"02269", b"{}", [])
    out.changelog("t1.commune-bus.intake.dedup", 0, b"dossier/0/7", b"[]")
    out.offsets[RAW_TP] = 8
    return out


async def test_a_transaction_whose_send_failed_is_aborted_not_committed() -> None:
    """One send of the transaction fails (its changelog record times out) while its canonical batch succeeds: `publish`
    raises `SendFailed` from inside the transaction, which is aborted, never committed with its offsets."""
    producer = Producer(send_fails=KafkaTimeoutError())
    with pytest.raises(transaction.SendFailed, match="KafkaTimeoutError"):
        await transaction.publish(cast(AIOKafkaProducer, producer), outputs(producer), GROUP)
    assert producer.ended == ["abort"]


async def test_a_transaction_whose_sends_all_succeeded_commits_with_its_offsets() -> None:
    """The same transaction with every send succeeding commits once, with its input offsets."""
    producer = Producer()
    await transaction.publish(cast(AIOKafkaProducer, producer), outputs(producer), GROUP)
    assert producer.ended == ["commit"]
    assert producer.offsets == [{RAW_TP: 8}]
