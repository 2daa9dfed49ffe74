"""Dossier lifecycle events (hồ sơ thủ tục hành chính).

One event per status change, carrying the dossier's state after the change
(the national portal's sync payload is a state snapshot too). Personal data of
the applicant is kept in the `applicant` group and nowhere else: clear as commune
systems send it (raw topics), sealed per field on every other topic (`schemas.personal`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from schemas.codes import COMPLETED_STATUSES, OPEN_STATUSES, Channel, DossierStatus, Locale, Timeliness
from schemas.envelope import Event, Model
from schemas.limits import MAX_AMOUNT_VND, NO_CONTROL_CHARACTERS, SAFETY_LIMIT, ItemText, identifier, items
from schemas.personal import SUBJECT_PATTERN, SealedApplicant
from schemas.text import NFC
from schemas.times import UtcDateTime, vietnam_date

DOSSIER_STATUS_CHANGED: Final = "vn.communebus.dossier.status-changed.v1"


def _status(value: object) -> object:
    if type(value) is int and (status := DossierStatus._value2member_map_.get(value)) is not None:  # the usual case
        return status
    if isinstance(value, str) and (digits := value.strip()).isascii() and digits.isdigit() and len(digits) <= 9:
        value = int(digits)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e9:  # JSON's 4.0 is 4, as the schema's enum
        value = int(value)                                                      # takes it (contracts audit)
    if isinstance(value, int) and not isinstance(value, bool) and value in DossierStatus._value2member_map_:
        return DossierStatus(value)  # a DossierStatus too (an IntEnum)
    raise PydanticCustomError("unknown_status", "the dossier status is not one of the codes 1-10")


Status = Annotated[DossierStatus, BeforeValidator(_status), Field(description="TrangThaiHoSo, 1-10")]


class Applicant(Model):
    """PERSONAL DATA (Decree 13/2023): only for services that must contact the applicant.

    Never logged, never a metric label, never in an error message.
    """

    model_config = Model.model_config | {"json_schema_extra": {"x-personal-data": True}}

    name: Annotated[str, Field(max_length=200, pattern=NO_CONTROL_CHARACTERS), NFC] | None = Field(
        default=None, repr=False, json_schema_extra={SAFETY_LIMIT: True},
        description="One line: no control, line separator or bidirectional-override character")
    id_number: str | None = identifier(default=None, max_length=20, repr=False, description="CCCD")
    phone: str | None = identifier(default=None, max_length=20, repr=False)
    email: str | None = identifier(default=None, max_length=254, repr=False, description="Reaches an e-mail header")
    zalo_user_id: str | None = identifier(default=None, max_length=64, repr=False)
    address: Annotated[str, Field(max_length=500), NFC] | None = Field(default=None, repr=False)
    preferred_locale: Locale = Locale.VI


class OpenedApplicant(Applicant):
    """The applicant as a webhook subscriber entitled to personal data receives it (ADR 0035): clear, with the
    pseudonymous `subject` it was sealed under, which erasure notices name. Only in such webhooks: intake refuses it
    on a raw topic (the subject is its to derive), so no canonical topic carries it."""

    subject: str = Field(pattern=SUBJECT_PATTERN, description="Pseudonymous applicant id (peppered HMAC), as the "
                         "sealed form and the erasure notices name it")


APPLICANT_FORMS = ("clear", "sealed", "opened")


def _applicant_form(value: object) -> str:
    """Sealed when it names its data key, opened when it names its subject alone; otherwise the clear form, whose
    errors then name the field alone."""
    if isinstance(value, SealedApplicant) or (isinstance(value, dict) and "key_id" in value):
        return "sealed"
    if isinstance(value, OpenedApplicant) or (isinstance(value, dict) and "subject" in value):
        return "opened"
    return "clear"


ApplicantGroup = Annotated[
    Annotated[Applicant, Tag("clear")] | Annotated[SealedApplicant, Tag("sealed")]
    | Annotated[OpenedApplicant, Tag("opened")], Discriminator(_applicant_form)]
"""The applicant group in any form; validation errors carry the form (`clear`/`sealed`/`opened`) in their location.
The three are disjoint in the JSON Schema too (`oneOf`): `subject` and `key_id` are what tell them apart."""


class DueDateChange(Model):
    previous_due_at: UtcDateTime
    new_due_at: UtcDateTime
    changed_at: UtcDateTime | None = None


class SubmittedDocument(Model):
    name: Annotated[str, Field(max_length=300), NFC] | None = None
    digitised: bool = False
    reused: bool = False


class Fee(Model):
    name: Annotated[str, Field(max_length=300), NFC] | None = None
    amount_vnd: int = Field(ge=0, le=MAX_AMOUNT_VND, json_schema_extra={SAFETY_LIMIT: True})


class DossierData(Model):
    dossier_code: str = identifier(min_length=1, max_length=64, description="MaHoSo")
    procedure_code: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z._-]+$", description="MaTTHC")
    procedure_name: Annotated[str, Field(max_length=500), NFC] | None = None
    field_code: str | None = identifier(default=None, max_length=64, description="MaLinhVuc")
    channel: Channel
    status: Status
    submitted_at: UtcDateTime | None = None
    received_at: UtcDateTime | None = None
    due_at: UtcDateTime | None = None
    ended_at: UtcDateTime | None = None
    returned_at: UtcDateTime | None = None
    rejected_at: UtcDateTime | None = None
    rejection_reason: Annotated[str, Field(max_length=1000), NFC] | None = None
    requested_documents: list[ItemText] = items("What the applicant must add (status 5)")
    due_date_changes: list[DueDateChange] = items()
    handling_unit: Annotated[str, Field(max_length=200), NFC] | None = Field(default=None, description="DonViXuLy")
    assigned_officer_id: str | None = identifier(default=None, max_length=64,
                                                 description="Staff account id, not a name")
    fees: list[Fee] = items()
    paid_online: bool = False
    digitised: bool = Field(default=False, description="HoSoCoThanhPhanSoHoa")
    result_digitised: bool = False
    vneid_verified: bool = False
    documents: list[SubmittedDocument] = items()
    timeliness: Timeliness | None = Field(default=None, description="Derived by intake when processing has ended")
    applicant: ApplicantGroup | None = Field(
        default=None, description="Clear on the raw topics only; intake seals it before the canonical topic "
        "(ADR 0015). Opened (clear, with its subject) in the webhooks of a subscriber entitled to personal data "
        "(ADR 0035)")

    @model_validator(mode="after")
    def _consistent(self) -> DossierData:
        self._require_dates()
        self._check_order()
        timeliness = timeliness_of(self.ended_at, self.due_at) if self.status in COMPLETED_STATUSES else None
        if timeliness is not self.timeliness:
            # the field directly: BaseModel.__setattr__ costs more than the rest of this validator
            self.__dict__["timeliness"] = timeliness
            self.__pydantic_fields_set__.add("timeliness")
        return self

    def _require_dates(self) -> None:
        for name in REQUIRED_DATES[self.status]:
            if getattr(self, name) is None:
                raise PydanticCustomError(
                    "missing_field", "{field} is required for status {status}",
                    {"field": name, "status": int(self.status)},
                )

    def _check_order(self) -> None:
        for earlier, later in DATE_ORDER:
            a, b = getattr(self, earlier), getattr(self, later)
            if a is not None and b is not None and b < a:
                raise PydanticCustomError(
                    "impossible_dates", "{later} ({b}) is before {earlier} ({a})",
                    {"field": later, "later": later, "earlier": earlier, "a": a.isoformat(), "b": b.isoformat()},
                )


DATE_ORDER: Final = (
    ("submitted_at", "received_at"),
    ("received_at", "ended_at"),
    ("received_at", "due_at"),
    ("ended_at", "returned_at"),
    ("submitted_at", "rejected_at"),
)
"""(earlier, later): when both are given, the later may not be before the earlier."""


def _required_dates(status: DossierStatus) -> tuple[str, ...]:
    needs_receipt = status in OPEN_STATUSES or status in COMPLETED_STATUSES
    return tuple(name for name, needed in (
        ("received_at", needs_receipt),
        ("due_at", needs_receipt),
        ("ended_at", status in COMPLETED_STATUSES),
        ("returned_at", status == DossierStatus.RETURNED),
    ) if needed)


REQUIRED_DATES = {status: _required_dates(status) for status in DossierStatus}
"""Which dates each status needs, worked out once."""


def timeliness_of(ended_at: datetime | None, due_at: datetime | None) -> Timeliness | None:
    """Early if the end day is before the due day, on time if the same (Vietnam calendar), late if after."""
    if ended_at is None or due_at is None:
        return None
    ended, due = vietnam_date(ended_at), vietnam_date(due_at)
    if ended < due:
        return Timeliness.EARLY
    return Timeliness.ON_TIME if ended == due else Timeliness.LATE


class DossierStatusChanged(Event):
    type: Literal["vn.communebus.dossier.status-changed.v1"] = DOSSIER_STATUS_CHANGED
    data: DossierData
