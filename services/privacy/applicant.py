"""Sealing and opening the applicant group of dossier events, pure (a `Keyring` is passed in).

The subject is the applicant's CCCD when there is one (what an erasure request names),
else the phone, e-mail or Zalo id; an applicant with none of them gets the subject of its
dossier (`crypto.dossier_subject`). Each personal field is sealed on its own, with `<event id>/applicant.<field>` as
associated data, so notify opens only the contact it delivers to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from schemas.dossier import Applicant, DossierStatusChanged
from schemas.envelope import Event, built, replaced
from schemas.personal import PERSONAL_FIELDS, KeyRecord, SealedApplicant, SealedValue
from services.privacy import crypto
from services.privacy.crypto import Erased, Key, PrivacyError
from services.privacy.key_records import KeyUnreadable
from services.privacy.keyring import Keyring

_IDENTIFIERS = (("cccd", "id_number"), ("phone", "phone"), ("email", "email"), ("zalo", "zalo_user_id"))
CONTACT_KINDS = {field: kind for kind, field in _IDENTIFIERS if kind != "cccd"}
"""The contact fields, each with its kind for `crypto.identifies`."""


class AlreadySealed(PrivacyError):
    """A raw record arrived with a sealed applicant group: only intake seals (the record is rejected)."""


_FIELD_NAMES = {field: field.encode() for field in PERSONAL_FIELDS}
_ABSENT: dict[str, Any] = dict.fromkeys(PERSONAL_FIELDS)
_SET = frozenset({"subject", "key_id", "preferred_locale"})
"""The fields every sealed applicant sets (as `model_construct` counts them), besides the personal fields it has."""


def field_aad(event_id: str, field: str) -> str:
    return f"{event_id}/applicant.{field}"


Dossier = tuple[str, str]
"""A dossier as its events name it: (the event's source, its dossier code)."""


class SealingKeys(Protocol):
    """What sealing an applicant asks of a keyring: intake's `Keyring`, or the gateway's stand-in of the same shapes
    (`sizing.StandInKeys`), which seals to the same size without intake's keys."""

    def subject(self, kind: str, value: str, /) -> str: ...

    def dossier_subject(self, source: str, dossier_code: str, /) -> str: ...

    def key_for(self, subject: str, /, *, written_at: datetime | None = None) -> tuple[str, Key, list[KeyRecord]]: ...


def subject_of(keyring: SealingKeys, applicant: Applicant, dossier: Dossier) -> str:
    """The subject of the first identifier that names one person (`crypto.identifies`): a placeholder phone ("-",
    "N/A") shared by thousands of dossiers would put them all under one key, which one erasure would shred. Without
    one, the dossier's subject: one key for all its events (a random subject per event made a permanent key each)."""
    for kind, field in _IDENTIFIERS:
        value = getattr(applicant, field)
        if value and crypto.identifies(kind, value):
            return keyring.subject(kind, value)
    return keyring.dossier_subject(*dossier)


def reaches(field: str, value: str | None) -> bool:
    """Whether contact `field` (`CONTACT_KINDS`) holds a value that can reach one person (`crypto.identifies`)."""
    if value is None:
        return False
    if field == "phone" and value.isascii() and value.isdigit() and value[:1] == "0" and value[1:2] != "0":
        # a domestic number written plainly (most): already its own normal form, so `identifies` in short
        return len(value) >= crypto.MIN_PHONE_DIGITS and len(set(value)) > 1
    return crypto.identifies(CONTACT_KINDS[field], value)


def encrypt_applicant(keyring: SealingKeys, event_id: str, applicant: Applicant, dossier: Dossier,
                      written_at: datetime | None = None) -> tuple[SealedApplicant, list[KeyRecord]]:
    """The applicant of an event of `dossier` with every personal field sealed, and the key records the caller must
    write with it. A contact that reaches nobody (`reaches`: a form's filler, "-", "N/A", "0000000000") is left out:
    notify chose the channel by which contacts were there, so a phone of "-" beside a real e-mail address sent the
    citizen's message to an SMS gateway that could deliver nothing (notify audit). `written_at`: when its raw record
    was written (`Keyring.key_for`: written before the subject's erasure, it is sealed already erased)."""
    subject = subject_of(keyring, applicant, dossier)
    key_id, dek, records = keyring.key_for(subject, written_at=written_at)
    present = [(field, value) for field in PERSONAL_FIELDS
               if (value := getattr(applicant, field)) and (field not in CONTACT_KINDS or reaches(field, value))]
    aad = field_aad(event_id, "").encode()  # + the field's name: `field_aad(event_id, field)` without a str per field
    tokens = crypto.seal_many(dek, [(value.encode(), aad + _FIELD_NAMES[field]) for field, value in present])
    values: dict[str, Any] = {"subject": subject, "key_id": key_id, **_ABSENT,
                              "preferred_locale": applicant.preferred_locale}
    values.update(zip((field for field, _ in present), tokens, strict=True))
    # built, not validated: every value is ours (ids and base64url tokens), and validation cost more than sealing
    return built(SealedApplicant, _SET | {field for field, _ in present}, values), records


def seal_event(keyring: SealingKeys, event: Event,
               written_at: datetime | None = None) -> tuple[Event, list[KeyRecord]]:
    """`event` as the canonical topic carries it: a dossier event's applicant sealed (`encrypt_applicant`); other
    events unchanged.

    Raises `AlreadySealed` for an input that carries a sealed applicant (only intake seals).
    """
    if not isinstance(event, DossierStatusChanged) or event.data.applicant is None:
        return event, []
    applicant = event.data.applicant
    if isinstance(applicant, SealedApplicant):
        raise AlreadySealed("the applicant group is already sealed")
    sealed, records = encrypt_applicant(keyring, event.id, applicant, (event.source, event.data.dossier_code),
                                        written_at)
    return replaced(event, data=replaced(event.data, applicant=sealed)), records


def open_field(keyring: Keyring, event_id: str, sealed: SealedApplicant, field: str) -> str | None:
    """One clear field (None if the applicant had none); `Erased` / `KeyUnknown` / `Tampered` otherwise."""
    token = getattr(sealed, field)
    if token is None:
        return None
    dek = keyring.dek(sealed.subject, sealed.key_id)
    return crypto.open_sealed(dek, token, field_aad(event_id, field).encode()).decode()


def open_applicant(keyring: Keyring, event_id: str, sealed: SealedApplicant) -> Applicant:
    """The clear applicant group (trace, CLI, a subscriber entitled to it)."""
    clear = {field: open_field(keyring, event_id, sealed, field) for field in PERSONAL_FIELDS}
    return Applicant(preferred_locale=sealed.preferred_locale, **clear)


def sealed_value(event_id: str, sealed: SealedApplicant, field: str) -> SealedValue | None:
    """One sealed field carried on its own (a notification's contact), None if the applicant had none."""
    token = getattr(sealed, field)
    if token is None:
        return None
    return SealedValue(subject=sealed.subject, key_id=sealed.key_id, aad=field_aad(event_id, field), token=token)


def open_value(keyring: Keyring, value: SealedValue) -> str:
    return crypto.open_sealed(keyring.dek(value.subject, value.key_id), value.token, value.aad.encode()).decode()


ERASED_MARK = "[erased]"
UNREADABLE_MARK = "[key not readable here]"


def for_display(keyring: Keyring, event_id: str, sealed: SealedApplicant) -> dict[str, str]:
    """The applicant's fields for an operator's screen (trace, CLI): clear, or `[erased]` once the key is gone
    (`[key not readable here]` when its record is wrapped under a KEK this service was not given).

    Only for people entitled to see personal data; never for a log line.
    """
    shown: dict[str, str] = {"preferred_locale": sealed.preferred_locale.value}
    for field in PERSONAL_FIELDS:
        try:
            value = open_field(keyring, event_id, sealed, field)
        except Erased:
            value = ERASED_MARK
        except KeyUnreadable:  # not erased: this keyring lacks the KEK its key was wrapped under
            value = UNREADABLE_MARK
        if value is not None:
            shown[field] = value
    return shown
