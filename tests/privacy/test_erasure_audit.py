"""An erasure's audit record is checked before any key is destroyed: a requester the record cannot hold stops the
erasure with nothing done (Kafka replaced by in-memory fakes that keep what each transaction committed)."""

from __future__ import annotations

import orjson
import pytest

from schemas.topics import KEYS_APPLICANTS, PRIVACY_AUDIT, PRIVACY_ERASURES
from services.privacy import erase
from tests.privacy.fakes import Broker
from tests.privacy.keys import PEPPER

pytestmark = pytest.mark.unit


async def test_a_requester_the_audit_record_cannot_hold_stops_the_erasure_before_anything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--requested-by` of 129 characters: before, both keys were tombstoned and committed, then the audit record
    failed to build and none was written; now a ValueError naming the field, nothing sent, no topic even looked up."""
    broker = Broker({"k1", "k2"})
    broker.install(monkeypatch)
    with pytest.raises(ValueError) as refused:
        await erase.erase_applicant(None, "", PEPPER, [("cccd", "008123456789"), ("phone", "0987654321")],  # type: ignore[arg-type]
                                    requested_by="x" * 129)
    assert broker.committed == [] and broker.checked == 0 and broker.keys == {"k1", "k2"}
    assert str(refused.value) == "the audit record would be invalid (requested_by): nothing was erased"


async def test_an_erasure_commits_its_audit_record_with_the_keys_it_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit record, built first, is written first in the transaction that tombstones the keys and marks the
    subject erased (`<subject>/~erased`, up to the broker's time of the audit record and a minute, ADR 0043), and
    counts the keys; so is the notice for subscribers (ADR 0035): the subject and when, not who asked."""
    broker = Broker({"k1", "k2"})
    broker.install(monkeypatch)
    [(kind, audit)] = await erase.erase_applicant(None, "", PEPPER, [("cccd", "008123456789")],  # type: ignore[arg-type]
                                                  requested_by="os:duty-officer")
    [((topic, value, _), *tombstones, (mark_topic, mark, mark_key), notice)] = broker.committed  # nothing late to tidy
    assert [(t, v, k) for t, v, k in tombstones] == [(KEYS_APPLICANTS.name, None, f"{audit.subject}/{k}".encode())
                                                     for k in ("k1", "k2")]
    assert (mark_topic, mark_key) == (KEYS_APPLICANTS.name, f"{audit.subject}/~erased".encode()) and mark is not None
    assert orjson.loads(mark)["subject"] == audit.subject
    assert topic == PRIVACY_AUDIT.name and value is not None
    assert orjson.loads(value)["keys_destroyed"] == audit.keys_destroyed == 2 and kind == "cccd"
    assert notice[0] == PRIVACY_ERASURES.name and notice[2] == audit.subject.encode() and notice[1] is not None
    assert orjson.loads(notice[1]) == {"erasure_id": audit.erasure_id, "subject": audit.subject,
                                       "erased_at": audit.requested_at.isoformat().replace("+00:00", "Z")}


async def test_an_erasure_by_phone_also_erases_the_subject_an_old_spelling_sealed_under(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A key under the subject `84987654321` had before spellings were made one: erased by `0987654321` too, with its
    own audit record; the old spellings holding no key leave no record at all."""
    from typing import Any

    from services.privacy import crypto

    broker = Broker(set())
    broker.install(monkeypatch)
    legacy = crypto.subject_id(PEPPER, "phone", "84987654321")

    async def live_in(_: Any, topic: str, __: int, subject: str, *___: Any) -> set[str]:
        tombstoned = {k for tx in broker.committed for _, v, k in tx if v is None}
        old = subject == legacy and f"{legacy}/old".encode() not in tombstoned and topic.endswith("keys.applicants")
        return {"old"} if old else set()

    monkeypatch.setattr(erase, "_live_in", live_in)
    audits = await erase.erase_applicant(None, "", PEPPER, [("phone", "0987654321")],  # type: ignore[arg-type]
                                         requested_by="os:duty-officer")
    assert [(kind, a.subject, a.keys_destroyed) for kind, a in audits] == [
        ("phone", crypto.identifier_subject(PEPPER, "phone", "0987654321"), 0), ("phone", legacy, 1)]
    assert [k for tx in broker.committed for _, v, k in tx if v is None] == [f"{legacy}/old".encode()]


@pytest.mark.parametrize(("kind", "value"), [("zalo", "-"), ("zalo", "N/A"), ("cccd", "000000000000"),
                                             ("phone", "0000000000")])
async def test_an_erasure_by_a_placeholder_is_refused_before_anything(kind: str, value: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A placeholder names everyone sealed under it, so an erasure by one is a ValueError naming the kind, not the
    value, and nothing is sent (before: accepted, and every applicant sealed under it would have been shredded)."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    with pytest.raises(ValueError) as refused:
        await erase.erase_applicant(None, "", PEPPER, [(kind, value)],  # type: ignore[arg-type]
                                    requested_by="os:duty-officer")
    assert str(refused.value) == f"not an identifier of one person: {kind}"
    assert broker.committed == [] and broker.checked == 0 and broker.keys == {"k1"}


async def test_an_erasure_counts_and_tombstones_the_keys_of_the_subjects_dead_letters_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An applicant known only from a dead letter has a key on `commune.keys.deadletters` (it expires with the
    letter): the erasure tombstones it there and counts it (CI: keys_destroyed was 0, the key left to its expiry)."""
    from typing import Any

    broker = Broker(set())
    broker.install(monkeypatch)

    async def live_in(_: Any, topic: str, *__: Any) -> set[str]:
        tombstoned = {k for tx in broker.committed for _, v, k in tx if v is None}
        return {"dl"} if topic.endswith("keys.deadletters") and not tombstoned else set()

    monkeypatch.setattr(erase, "_live_in", live_in)
    audit = await erase.erase_subject(None, "", "a-subject", requested_by="os:duty-officer")  # type: ignore[arg-type]
    assert audit.keys_destroyed == 1
    assert [(topic, k) for tx in broker.committed for topic, v, k in tx if v is None] == [
        ("commune.keys.deadletters", b"a-subject/dl")]
