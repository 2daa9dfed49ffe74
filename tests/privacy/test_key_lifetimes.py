"""How many keys the keyring makes and how long they live: one per dossier without an identifier (pure, no broker)."""

from __future__ import annotations

import pytest

from schemas.dossier import DossierStatusChanged
from schemas.personal import KeyRecord
from services.privacy import applicant as sealing
from services.privacy import crypto
from services.privacy.keyring import Keyring, encoded
from tests.privacy.keys import keyring
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


def _event(event_id: str, code: str, applicant: dict[str, str], status: int = 2) -> DossierStatusChanged:
    return DossierStatusChanged.model_validate(canonical_dossier(event_id, dossier_code=code, status=status,
                                                                 applicant=applicant))


def _read_back(ring: Keyring, records: list[KeyRecord]) -> None:
    """What the key store does with the records a transaction wrote."""
    for record in records:
        ring.apply(record.record_key, encoded(record))


@pytest.mark.parametrize("applicant", [{"name": "Lò Thị Sen", "address": "Bản Nà Tàng"},
                                       {"name": "Lò Thị Sen", "phone": "-", "zalo_user_id": "N/A"}])
def test_every_event_of_a_dossier_without_an_identifier_shares_one_key(applicant: dict[str, str]) -> None:
    """40 status events of one dossier whose applicant gave no identifier (or placeholders only): one subject, one
    permanent key, written with the first event only (before: a random subject and a new key per event)."""
    ring = keyring()
    subjects, written = set(), []
    for i in range(40):
        event, records = sealing.seal_event(ring, _event(f"evt-{i}", "TL-2512-0042", applicant, 2 + (i % 3) * 2))
        _read_back(ring, records)
        assert isinstance(event.data.applicant, sealing.SealedApplicant)
        subjects.add(event.data.applicant.subject)
        written += records
        assert sealing.open_field(ring, event.id, event.data.applicant, "name") == "Lò Thị Sen"
    (subject,) = subjects
    assert crypto.identifies("subject", subject) and subject.startswith("d-")
    assert len(ring) == 1 and len(written) == 1 and written[0].expires_at is None


def test_two_dossiers_without_an_identifier_get_two_subjects() -> None:
    """Another dossier code, or the same code from another source, is another dossier: its own subject, so erasing
    one applicant's never shreds a stranger's; the subject is the pepper's (another pepper, another subject)."""
    ring, applicant = keyring(), {"name": "Lò Thị Sen"}
    one = sealing.seal_event(ring, _event("e1", "TL-2512-0001", applicant))[0]
    two = sealing.seal_event(ring, _event("e2", "TL-2512-0002", applicant))[0]
    elsewhere = _event("e3", "TL-2512-0001", applicant).model_copy(update={"source": "/provinces/20/dossiers"})
    three = sealing.seal_event(ring, elsewhere)[0]
    subjects = {e.data.applicant.subject for e in (one, two, three)}  # type: ignore[union-attr]
    assert len(subjects) == 3 and len(ring) == 3
    other_pepper = Keyring({"kek-1": bytes(32)}, "kek-1", b"another-pepper-0123")
    assert other_pepper.dossier_subject(one.source, "TL-2512-0001") not in subjects
    assert ring.dossier_subject(one.source, "TL-2512-0001") == one.data.applicant.subject  # type: ignore[union-attr]
