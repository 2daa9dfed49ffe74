"""An erasure's audit record is checked before any key is destroyed: a requester the record cannot hold stops the
erasure with nothing done (Kafka replaced by in-memory fakes that keep what each transaction committed)."""

from __future__ import annotations

import orjson
import pytest

from schemas.topics import KEYS_APPLICANTS, PRIVACY_AUDIT
from services.privacy import erase
from tests.privacy.fakes import Broker
from tests.privacy.keys import PEPPER

pytestmark = pytest.mark.unit


async def test_a_requester_the_audit_record_cannot_hold_stops_the_erasure_before_anything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--requested-by` of 129 characters: before, both keys were tombstoned and committed, then the audit record
    failed to build and none was written; now a ValueError naming the field, nothing sent, not even a topic made."""
    broker = Broker({"k1", "k2"})
    broker.install(monkeypatch)
    with pytest.raises(ValueError) as refused:
        await erase.erase_applicant(None, "", PEPPER, [("cccd", "008123456789"), ("phone", "0987654321")],  # type: ignore[arg-type]
                                    requested_by="x" * 129)
    assert broker.committed == [] and broker.topics_made == 0 and broker.keys == {"k1", "k2"}
    assert str(refused.value) == "the audit record would be invalid (requested_by): nothing was erased"


async def test_an_erasure_commits_its_audit_record_with_the_keys_it_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit record, built first, is written once the keys are tombstoned and counts them."""
    broker = Broker({"k1", "k2"})
    broker.install(monkeypatch)
    [(kind, audit)] = await erase.erase_applicant(None, "", PEPPER, [("cccd", "008123456789")],  # type: ignore[arg-type]
                                                  requested_by="os:duty-officer")
    tombstones, (*late, (topic, value, _)) = broker.committed
    assert {t for t, v, _ in tombstones if v is None} == {KEYS_APPLICANTS.name} and late == []
    assert topic == PRIVACY_AUDIT.name and value is not None
    assert orjson.loads(value)["keys_destroyed"] == audit.keys_destroyed == 2 and kind == "cccd"
