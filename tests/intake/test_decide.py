"""Unit tests of intake's per-record decision: normalise -> source policy -> de-duplication (no broker)."""

from __future__ import annotations

import pytest

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason, Rejection
from schemas.events import Family
from services.intake.decide import Decider, SourcePolicy, allow_all
from services.intake.dedup import SeenIds, published_key
from services.intake.outcome import Accepted
from tests.samples import HDR, MALFORMED, canonical_dossier, dumps, portal_dossier

pytestmark = pytest.mark.unit
REJECTED_AT = "2025-11-03T04:00:00+00:00"


def decider(family: Family = Family.DOSSIER, seen: frozenset[str] = frozenset(),
            policy: SourcePolicy = allow_all) -> Decider:
    """A decider for raw partition 4 that has published the sample source's events `seen`."""
    return Decider(family, "t1.commune.raw.dossier", 4, published(seen), policy, 1024 * 1024, REJECTED_AT)


def published(ids: frozenset[str], source: str = canonical_dossier()["source"]) -> SeenIds:
    seen = SeenIds()
    for event_id in ids:
        seen.add(published_key(source, event_id), 0)
    return seen


def deny_source(source: str, family: Family, commune: str) -> Rejection | None:
    """A source registry that knows no source."""
    return Rejection(reason=Reason.UNAUTHORISED_SOURCE, field="source", message="source is not in the source registry")


def test_a_valid_record_is_accepted_as_its_canonical_event() -> None:
    """A valid, allowed, new record is accepted: its canonical event, keyed by commune, ready to publish."""
    decision = decider().decide(dumps(canonical_dossier("evt-new")), [], offset=17)
    assert isinstance(decision, Accepted)
    assert decision.event.id == "evt-new"
    record = wire.encode(decision.event)
    assert record.key == b"02269" and dict(record.headers)["ce_id"] == b"evt-new"


def test_a_portal_record_is_accepted_with_its_derived_id() -> None:
    """The portal shape is accepted too (normalised to a canonical dossier event)."""
    decision = decider().decide(dumps(portal_dossier("TL-1")), HDR, offset=0)
    assert isinstance(decision, Accepted) and decision.event.subject == "TL-1"


def test_an_id_already_published_is_a_duplicate_dead_letter() -> None:
    """An event whose id this partition already published is dead-lettered as `duplicate_event` on `id`."""
    seen_before = decider(seen=frozenset({"evt-1"}))
    decision = seen_before.decide(dumps(canonical_dossier("evt-1")), [], offset=5)
    assert isinstance(decision, DeadLetterContext)
    assert (decision.reason, decision.field, decision.source_offset) == (Reason.DUPLICATE_EVENT, "id", 5)
    assert isinstance(seen_before.decide(dumps(canonical_dossier("evt-2")), [], offset=6), Accepted)


def test_a_duplicates_dead_letter_message_does_not_repeat_its_id() -> None:
    """A producer numbering its events by the applicant's CCCD: the duplicate's dlq.message, kept in clear on the
    dead-letter topic, does not hold that number (before: "id: event 012345678901 of this source was ...")."""
    cccd = "012345678901"
    decision = decider(seen=frozenset({cccd})).decide(dumps(canonical_dossier(cccd)), [], offset=5)
    assert isinstance(decision, DeadLetterContext) and decision.reason is Reason.DUPLICATE_EVENT
    assert decision.message == "id: an event of this source with this id was already published"
    assert not any(cccd.encode() in value for _, value in decision.headers())


def test_the_same_id_from_another_source_is_published() -> None:
    """Ids are unique per source (CloudEvents): another commune's system numbering its events from 1 too is not
    a duplicate of ours."""
    other = {**canonical_dossier("evt-1"), "source": "/communes/02269/another-system"}
    assert isinstance(decider(seen=frozenset({"evt-1"})).decide(dumps(other), [], offset=7), Accepted)


def test_a_source_the_policy_denies_is_dead_lettered_with_the_policy_reason() -> None:
    """The source policy's rejection becomes the dead letter's reason, field and message."""
    decision = decider(policy=deny_source).decide(dumps(canonical_dossier("evt-9")), [], offset=9)
    assert isinstance(decision, DeadLetterContext)
    assert (decision.reason, decision.field, decision.message) == (
        Reason.UNAUTHORISED_SOURCE, "source", "source is not in the source registry")


def test_the_policy_is_asked_before_de_duplication() -> None:
    """A denied source is reported as unauthorised even when its id was seen: the policy comes first."""
    decision = decider(seen=frozenset({"evt-1"}), policy=deny_source).decide(dumps(canonical_dossier()), [], 1)
    assert isinstance(decision, DeadLetterContext) and decision.reason is Reason.UNAUTHORISED_SOURCE


def test_a_policy_sees_source_family_and_commune() -> None:
    """The policy is asked with the event's source, the topic's family and the event's commune."""
    asked: list[tuple[str, Family, str]] = []

    def record(source: str, family: Family, commune: str) -> Rejection | None:
        asked.append((source, family, commune))
        return None

    decider(policy=record).decide(dumps(canonical_dossier()), [], offset=0)
    assert asked == [(canonical_dossier()["source"], Family.DOSSIER, "02269")]


@pytest.mark.parametrize(("family", "value", "headers", "reason", "field"), MALFORMED,
                         ids=[f"{r.value}-{f}" for _, _, _, r, f in MALFORMED])
def test_a_malformed_record_is_dead_lettered_with_its_reason_and_origin(
    family: Family, value: bytes | None, headers: list[tuple[str, bytes]], reason: Reason, field: str,
) -> None:
    """Each malformed record gets its reason and field, and dlq.* headers naming topic, partition and offset."""
    decision = decider(family).decide(value, headers, offset=42)
    assert isinstance(decision, DeadLetterContext)
    assert (decision.reason, decision.field) == (reason, field)
    assert decision.message
    read_back = DeadLetterContext.from_headers(decision.headers())
    assert (read_back.source_topic, read_back.source_partition, read_back.source_offset, read_back.rejected_at) == (
        "t1.commune.raw.dossier", 4, 42, REJECTED_AT)
    assert read_back == decision


def test_an_exception_in_one_decision_dead_letters_that_record_as_internal_error() -> None:
    """A policy that raises (a bug) dead-letters the record as internal_error with type and file:line, and the
    next record is decided as usual."""

    def broken(source: str, family: Family, commune: str) -> Rejection | None:
        raise RuntimeError(f"registry lookup of {source} failed")

    d = decider(policy=broken)
    decision = d.decide(dumps(canonical_dossier("evt-1")), [], offset=9)
    assert isinstance(decision, DeadLetterContext)
    assert (decision.reason, decision.field, decision.source_offset) == (Reason.INTERNAL_ERROR, "(record)", 9)
    assert decision.message.startswith("internal error: RuntimeError at ") and "test_decide.py:" in decision.message
    assert "/communes/" not in decision.message
    poison = decider().decide(dumps(portal_dossier(NgayNopHoSo="00010101000000")), HDR, offset=10)
    assert isinstance(poison, DeadLetterContext) and poison.reason is Reason.VALUE_OUT_OF_RANGE
    assert isinstance(decider().decide(dumps(canonical_dossier("evt-2")), [], offset=11), Accepted)
