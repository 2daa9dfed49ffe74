"""Intake's pure decision with a keyring: canonical dossier events leave sealed, with their key records (no broker)."""

from __future__ import annotations

import pytest

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.dossier import DossierStatusChanged
from schemas.events import Family
from schemas.personal import SealedApplicant
from services.intake.decide import Decider, allow_all
from services.intake.dedup import SeenIds, published_key
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Rejected
from services.privacy.applicant import open_applicant
from tests.privacy.keys import keyring
from tests.samples import HDR, canonical_dossier, dumps, portal_dossier, visit_completed

pytestmark = pytest.mark.unit
PERSONAL = ("Nguyễn Thị Lan", "008123456789", "0912345678", "Trần Văn Minh", "0987654321")


def test_portal_and_canonical_dossiers_leave_sealed_with_their_key() -> None:
    """Both dossier shapes come out with a sealed applicant, one key record, and no personal value on the wire."""
    ring = keyring()
    for value, headers in ((dumps(portal_dossier()), HDR), (dumps(canonical_dossier()), [])):
        out = normalise(Family.DOSSIER, value, headers, keyring=ring)
        assert isinstance(out, Accepted) and isinstance(out.event, DossierStatusChanged)
        assert isinstance(out.event.data.applicant, SealedApplicant) and len(out.keys) == 1
        record = wire.encode(out.event)
        wire_text = record.value.decode() + "".join(v.decode() for _, v in record.headers)
        assert not [p for p in PERSONAL if p in wire_text]
        decoded = wire.decode(record.headers, record.value)
        assert isinstance(decoded, DossierStatusChanged) and isinstance(decoded.data.applicant, SealedApplicant)
        clear = open_applicant(ring, decoded.id, decoded.data.applicant)
        assert clear.phone in ("0912345678", "0987654321")


def test_without_a_keyring_the_gateway_still_sees_the_clear_form() -> None:
    """The gateway and `commune-bus validate` normalise without a keyring: nothing is sealed, no key is made."""
    out = normalise(Family.DOSSIER, dumps(portal_dossier()), HDR)
    assert isinstance(out, Accepted) and out.keys == ()
    assert isinstance(out.event, DossierStatusChanged) and not isinstance(out.event.data.applicant, SealedApplicant)


def test_a_raw_record_with_a_sealed_applicant_is_rejected() -> None:
    """Only intake seals: a raw record that already carries a sealed group is rejected on data.applicant."""
    sealed = normalise(Family.DOSSIER, dumps(canonical_dossier()), keyring=keyring())
    assert isinstance(sealed, Accepted)
    replayed = sealed.event.model_dump_json().encode()
    out = normalise(Family.DOSSIER, replayed, [])
    assert isinstance(out, Rejected)
    assert (out.rejection.reason, out.rejection.field) == (Reason.INVALID_FIELD, "data.applicant")


def test_other_families_are_untouched() -> None:
    """Events without personal data pass unchanged and need no key."""
    out = normalise(Family.MOBILE_TEAM, dumps(visit_completed()), keyring=keyring())
    assert isinstance(out, Accepted) and out.keys == ()


def test_decider_seals_only_what_it_publishes() -> None:
    """A duplicate is dead-lettered before sealing (no key made for it); a new event is sealed with its key."""
    ring = keyring()
    seen = SeenIds()
    seen.add(published_key(canonical_dossier()["source"], "evt-1"), 0)
    d = Decider(Family.DOSSIER, "t.commune.raw.dossier", 0, seen, allow_all, 1 << 20,
                "2026-12-01T08:00:00+00:00", keyring=ring)
    assert isinstance(d.decide(dumps(canonical_dossier("evt-1")), [], 3), DeadLetterContext)
    assert len(ring) == 0
    published = d.decide(dumps(canonical_dossier("evt-2")), [], 4)
    assert isinstance(published, Accepted) and len(published.keys) == 1 and len(ring) == 1
