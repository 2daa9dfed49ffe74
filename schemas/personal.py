"""Personal data at rest: sealed applicant fields, data-key records and erasure audit records (ADR 0015).

Outside the raw topics, an applicant's personal data travels only sealed: each field
AES-256-GCM encrypted under the applicant's data key (DEK), the DEK kept wrapped in
the key topic (`commune.keys.applicants`), never inside an event. Erasing the
applicant tombstones every key of their subject, so every sealed copy becomes
unreadable at once. The shapes are here because `schemas/` is the one home of what
travels on a topic; the cryptography is in `services/privacy`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from schemas.codes import Locale
from schemas.envelope import Model
from schemas.times import UtcDateTime

SUBJECT_PATTERN = r"^[A-Za-z0-9_:.-]{1,80}$"
"""A subject id: `a-` + base64url of a peppered HMAC of the CCCD (or phone/e-mail), never the number itself."""
KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]+$"
"""base64url (no padding) of the 12-byte nonce followed by the ciphertext and its 16-byte tag."""

PERSONAL_FIELDS = ("name", "id_number", "phone", "email", "zalo_user_id", "address")
"""The applicant fields that are personal data (sealed outside the raw topics); `preferred_locale` stays clear."""


MAX_SEALED_CHARACTERS = 500
"""The longest clear personal field (`Applicant.address`), in characters."""
MAX_TOKEN_LENGTH = -(-(4 * MAX_SEALED_CHARACTERS + 12 + 16) * 4 // 3)
"""A token of the longest clear field in the widest UTF-8 (4 bytes a character), nonce and tag added, in base64url:
2,704 (it was 2,048: an address of 378 emoji sealed past it, and no reader could decode the event, 2026-12-02)."""


def _token() -> Any:
    return Field(default=None, pattern=TOKEN_PATTERN, max_length=MAX_TOKEN_LENGTH, repr=False)


class SealedApplicant(Model):
    """The applicant group as canonical topics carry it: every personal field sealed, the locale clear.

    A field's associated data is `<event id>/applicant.<field>`: a token moved to another event or
    field does not open. `subject` and `key_id` name the data key; neither reveals the person.
    """

    model_config = Model.model_config | {"json_schema_extra": {"x-personal-data": "sealed"}}

    subject: str = Field(pattern=SUBJECT_PATTERN, description="Pseudonymous applicant id (peppered HMAC)")
    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The data key in commune.keys.applicants")
    name: str | None = _token()
    id_number: str | None = _token()
    phone: str | None = _token()
    email: str | None = _token()
    zalo_user_id: str | None = _token()
    address: str | None = _token()
    preferred_locale: Locale = Locale.VI


class SealedValue(Model):
    """One sealed value carried on its own (notify's recipient contact); `aad` is what it was sealed with."""

    subject: str = Field(pattern=SUBJECT_PATTERN)
    key_id: str = Field(pattern=KEY_ID_PATTERN)
    aad: str = Field(max_length=300)
    token: str = Field(pattern=TOKEN_PATTERN, max_length=MAX_TOKEN_LENGTH, repr=False)


class KeyRecord(Model):
    """A wrapped data key: the value of `<subject>/<key id>` in the key topic (a tombstone erases it)."""

    subject: str = Field(pattern=SUBJECT_PATTERN)
    key_id: str = Field(pattern=KEY_ID_PATTERN)
    kek_id: str = Field(min_length=1, max_length=40, description="Which key-encryption key wrapped it")
    wrapped: str = Field(pattern=TOKEN_PATTERN, description="base64url(nonce + AES-GCM(KEK, DEK)), AAD subject/key")
    created_at: UtcDateTime
    expires_at: UtcDateTime | None = Field(
        default=None, description="Dead-letter keys only: unusable (and forgotten) after this time. Bounded as every "
        "time is (`schemas.limits`; audit: a bare `datetime`, naive or past what UTC holds, crashed every keyring "
        "reading it, comparing it with aware expiries or storing it on disk)")

    @property
    def record_key(self) -> bytes:
        return record_key(self.subject, self.key_id)


def record_key(subject: str, key_id: str) -> bytes:
    """The key-topic record key: several keys of one subject coexist (compaction keeps each)."""
    return f"{subject}/{key_id}".encode()


ERASED_MARK = "~erased"
"""The key id of a subject's erasure mark (`~` is no key-id character: never a real key's record key)."""
ERASED_KEY = "erased"
"""The key id of an applicant sealed already erased (ADR 0042): intake read their record after their erasure, but it
was written up to the erasure's mark. No key has this id (a key's is 22 random characters, `crypto.new_key_id`), so
every keyring answers `Erased`, and the values were sealed under a key made for them and dropped at once: no key
topic, backup or key-encryption key opens them."""


class ErasureMark(Model):
    """`<subject>/~erased` on the key topic: every key of the subject created up to `created_up_to` is erased, and
    a raw record written up to then that intake reads after it is sealed already erased (`ERASED_KEY`, ADR 0042).

    Tombstones erase the keys the erasure saw; a record of such a key written again afterwards (a worker that had not
    yet read the tombstone) would be the key's last record once compaction removed the tombstone, and a key store
    started later would load it. The mark is its own record key's only record, so compaction keeps it, and each
    keyring refuses a key of the subject created up to it, whichever it reads first.
    """

    subject: str = Field(pattern=SUBJECT_PATTERN)
    created_up_to: UtcDateTime = Field(description="The erasure's time plus a margin for the workers' clocks")


class ErasureAudit(Model):
    """What an erasure leaves behind: who asked, when, which pseudonymous subject, how many keys. No personal data."""

    erasure_id: str = Field(min_length=1, max_length=64)
    subject: str = Field(pattern=SUBJECT_PATTERN)
    requested_by: str = Field(min_length=1, max_length=128, description="Operator account or gateway principal")
    requested_at: UtcDateTime
    keys_destroyed: int = Field(ge=0)
    via: str = Field(default="cli", max_length=32, description="cli, gateway")


class ErasureNotice(Model):
    """On commune.privacy.erasures, for those who hold an applicant's data: the pseudonymous subject was erased, delete
    what you keep of it (ADR 0035). Written in the erasure's transaction; no personal data (the subject is the
    pseudonym of `data.applicant.subject`), nor who asked."""

    erasure_id: str = Field(min_length=1, max_length=64, description="The erasure's id (one notice per erasure)")
    subject: str = Field(pattern=SUBJECT_PATTERN, description="The subject erased, as `data.applicant.subject` names "
                         "it in the canonical events and in webhooks that carry an applicant")
    erased_at: UtcDateTime


ERASED_EVENT_TYPE: Final = "vn.communebus.privacy.applicant-erased.v1"
ERASED_EVENT_SOURCE: Final = "/commune-bus/privacy"


class ErasedSubject(Model):
    """`data` of the erasure webhook: the notice's subject and time, nothing of who asked."""

    subject: str = Field(pattern=SUBJECT_PATTERN, description="The subject erased, as `data.applicant.subject` named "
                         "it in the webhooks that carried the applicant")
    erased_at: UtcDateTime


class ApplicantErased(Model):
    """The signed webhook notify sends, for each erasure notice, to every subscriber that receives applicants' data
    (ADR 0035): structured CloudEvents JSON. Its schema is published beside the events' (`schemas/jsonschema`), so a
    subscriber validates it as it validates an event's webhook."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=64, description="The erasure's id: a resend has the same id and the "
                    "same `Webhook-Id`")
    source: Literal["/commune-bus/privacy"] = ERASED_EVENT_SOURCE
    type: Literal["vn.communebus.privacy.applicant-erased.v1"] = ERASED_EVENT_TYPE
    time: UtcDateTime
    subject: str = Field(pattern=SUBJECT_PATTERN, description="The subject erased (as `data.subject`)")
    datacontenttype: Literal["application/json"] = "application/json"
    data: ErasedSubject


SEALED_SUBJECT_HEADER = "dlq.sealed.subject"
"""On a sealed dead letter: the subject whose key sealed the value (an applicant's, or `dlq:<day>`)."""
SEALED_KEY_HEADER = "dlq.sealed.key"
"""On a sealed dead letter: the key id; the value is nonce || AES-GCM ciphertext of what its layout says."""
SEALED_LAYOUT_HEADER = "dlq.sealed.layout"
"""On a sealed dead letter: what its ciphertext holds. Absent (dead letters written before 2026-12-02): the original
value only, its key and headers in clear beside it. `RECORD_LAYOUT`: the original record whole (ADR 0026)."""
RECORD_LAYOUT = b"record.v1"
"""The original key, headers and value together (`schemas.deadletter.OriginalRecord.pack`); the dead letter's own key
is a commune code or none, and only headers that identify nobody stay in clear beside the `dlq.*` ones."""
SEALED_HEADERS: dict[str, Any] = {
    SEALED_SUBJECT_HEADER: {"type": "string", "description": "Whose data key sealed it: a pseudonymous applicant "
                            "subject, or dlq:<day>"},
    SEALED_KEY_HEADER: {"type": "string", "description": "The data key's id"},
    SEALED_LAYOUT_HEADER: {"type": "string", "description": "What the ciphertext holds: record.v1, the original key, "
                           "headers and value; absent on dead letters written before record.v1, whose value alone "
                           "was sealed (a reader refuses a layout it does not know)"},
}
"""The headers of a sealed dead letter (ADR 0015, 0026), as the exported schemas describe them."""
