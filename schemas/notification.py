"""Notification requests and their status events (the notify service's shapes).

A `NotificationRequest` is what a rule derives from one canonical event for one
recipient on one channel; its `notification_id` is deterministic (event id +
rule + recipient), so a redelivered event yields the same id and the provider
receives it as an idempotency key. A `NotificationStatus` is published to
`commune.notify.status` for every attempt; it carries no personal data. Both carry
the `traceparent` of the canonical event behind them, so one trace id follows a
record from the gateway to the provider call (`commune-bus trace <trace id>`).
"""

from __future__ import annotations

import copy
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from schemas.codes import Locale, Priority
from schemas.dossier import DossierData
from schemas.envelope import Model
from schemas.personal import SealedValue
from schemas.times import UtcDateTime
from schemas.trace import PATTERN as TRACEPARENT

TRACE_DESCRIPTION = "W3C trace context of the canonical event that caused it (None: a time-driven alert)"


class NotificationKind(StrEnum):
    DOSSIER_ACCEPTED = "dossier_accepted"
    DOCUMENTS_REQUESTED = "documents_requested"
    PAYMENT_REQUESTED = "payment_requested"
    DOSSIER_REJECTED = "dossier_rejected"
    RESULT_READY = "result_ready"
    RESULT_RETURNED = "result_returned"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    VISIT_TOMORROW = "visit_tomorrow"
    VISIT_SUMMARY = "visit_summary"
    ANNOUNCEMENT_SCHEDULED = "announcement_scheduled"
    BROADCAST_FAILED = "broadcast_failed"
    EMERGENCY = "emergency"
    WEBHOOK = "webhook"


class ChannelKind(StrEnum):
    SMS = "sms"
    ZALO = "zalo"
    EMAIL = "email"
    WEBHOOK = "webhook"


class Audience(StrEnum):
    """Citizens get quiet hours; staff and systems do not."""

    CITIZEN = "citizen"
    STAFF = "staff"
    SYSTEM = "system"


class Outcome(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEFERRED = "deferred"
    DEAD_LETTERED = "dead_lettered"
    ERASED = "erased"
    """Not sent: the applicant was erased (their data key is gone), ADR 0015."""
    EXPIRED = "expired"
    """Not sent: what it tells is over (a warning whose broadcast ended, a visit already held)."""


class Recipient(Model):
    """PERSONAL DATA in the contact fields: never logged, never a metric label, never written to a topic in clear.

    An applicant's contacts travel `sealed`; a directory contact's clear fields are dropped before a
    request is written (ledger, dead letters) and filled again from the directory at delivery. Only in a
    deployment that seals nothing (`INTAKE_SEAL_PERSONAL_DATA=false`) does an applicant's come in clear, and
    the ledger keeps it while the request is deferred: nothing could give it back (ADR 0015).
    """

    ref: str = Field(min_length=1, max_length=128, description="Non-personal reference: role:id, e.g. officer:cb-17")
    locale: Locale = Locale.VI
    phone: str | None = Field(default=None, max_length=20, repr=False)
    email: str | None = Field(default=None, max_length=254, repr=False)
    zalo_user_id: str | None = Field(default=None, max_length=64, repr=False)
    url: str | None = Field(default=None, max_length=500, repr=False, description="Webhook subscribers only")
    sealed: dict[str, SealedValue] | None = Field(
        default=None, description="An applicant's contacts, sealed (phone, email, zalo_user_id): opened at delivery")


class NotificationRequest(Model):
    notification_id: str = Field(min_length=1, max_length=64)
    event_id: str = Field(max_length=200, description="The event's id, an alert's (200) or an erasure's")
    event_source: str | None = Field(
        default=None, max_length=256, description="The event's source: with its id, what names it (None: a deadline "
        "alert, or a request written before ids named the source)")
    event_type: str = Field(max_length=128)
    rule: str = Field(max_length=128)
    kind: NotificationKind
    channel: ChannelKind
    audience: Audience
    priority: Priority = Priority.ROUTINE
    recipient: Recipient
    params: dict[str, str] = Field(default_factory=dict, description="Template parameters (may hold personal data)")
    payload: str | None = Field(default=None, description="Webhook body: the event as structured CloudEvents JSON")
    commune: str = Field(max_length=5, description="The commune's code; empty for an erasure notice (the applicant's)")
    province: str = Field(max_length=2)
    event_time: UtcDateTime
    not_before: datetime | None = Field(default=None, description="Deferred until (quiet hours)")
    expires_at: datetime | None = Field(
        default=None, description="Not sent from this time on (outcome expired): what it tells is over")
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT, description=TRACE_DESCRIPTION)
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=64, description="What the provider is told names the message "
        "(Idempotency-Key, a webhook's id, a ZNS tracking id, an e-mail's Message-ID) when it is not the notification "
        "id: a replay of a notification given up after failures that may have reached the provider (a timeout) "
        "carries the original's, so that the provider can tell it has it already (ADR 0033)")

    @property
    def is_emergency(self) -> bool:
        return self.priority is Priority.EMERGENCY

    @property
    def delivery_key(self) -> str:
        """What names this message at the provider: `idempotency_key`, or else the notification id."""
        return self.idempotency_key or self.notification_id


class NotificationStatus(Model):
    """One attempt's outcome. No personal data: the recipient appears only as its `ref`."""

    notification_id: str
    event_id: str
    rule: str
    kind: NotificationKind
    channel: ChannelKind
    recipient_ref: str
    commune: str = Field(description="The 5-digit code of the commune of the event told, the record's key too. An "
                         "erasure notice (ADR 0035) concerns no commune: it has no status record")
    outcome: Outcome
    attempt: int = Field(ge=0)
    at: UtcDateTime
    reason: str | None = Field(
        default=None, description="A code: why the attempt failed or was given up (`http_503`, `invalid_email`, "
        "`retries_exhausted:...`); on a deferred one, `parked:<why>` when a provider's outage outlasted its retries "
        "or its channel's circuit was open (`parked:circuit_open`; it is tried again at `not_before`); on a sent "
        "one, why the provider's reply was not kept (`provider_id_refused`, `reply_too_large`, "
        "`reply_unreadable`). Never a text a provider sent")
    provider_message_id: str | None = Field(
        default=None, description="The provider's id for the message, only if short and plain (at most 128 of "
        "A-Z a-z 0-9 . _ : -, `services/notify/channels/replies.py`), or notify's own e-mail Message-ID")
    not_before: datetime | None = None
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT, description=TRACE_DESCRIPTION)


COMMUNE = r"^[0-9]{5}$"
PROVINCE = r"^[0-9]{2}$"


def same_as_dossier(name: str) -> Any:
    """`DossierData`'s definition of field `name` (its bounds): a tracked dossier's fields come from its events, and
    unbounded, one 600 kB dossier code made a changelog record the broker refused, which ended every run (audit)."""
    return copy.copy(DossierData.model_fields[name])


class TrackedDossier(Model):
    """A dossier the deadline tracker watches (no personal data): open, or closed and kept a while so that an older
    event arriving after the closing one cannot reopen it."""

    dossier_code: str = same_as_dossier("dossier_code")
    commune: str = Field(pattern=COMMUNE)
    province: str = Field(pattern=PROVINCE)
    procedure_code: str = same_as_dossier("procedure_code")
    officer_id: str | None = same_as_dossier("assigned_officer_id")
    due_at: UtcDateTime
    is_open: bool = True
    alerted_due_soon: bool = False
    alerted_overdue: bool = False
    as_of: UtcDateTime | None = Field(
        default=None, description="Time of the event this state comes from: a state from an older event arriving "
        "later changes nothing (at the same time, an open state does not reopen a closed one). None: written before "
        "this field, or a time not believed (far ahead of the tracker's clock): the last to arrive wins")
    event_id: str | None = Field(default=None, max_length=128, description="Id of that event (for diagnosis; ids do "
                                 "not order)")


AlertKind = Literal[NotificationKind.DUE_SOON, NotificationKind.OVERDUE]
"""The kinds a deadline alert may be: another has no alert template (`render` raised KeyError for each of its
requests, each an `internal_error` dead letter; audit), so it is refused with the record (`invalid_field`)."""


class DeadlineAlert(Model):
    """A time-driven alert: the dossier is due within one working day, or overdue. Id is deterministic."""

    id: str = Field(max_length=200, description="<commune>:<dossier code>:<kind>:<due time>")
    kind: AlertKind
    dossier_code: str = same_as_dossier("dossier_code")
    commune: str = Field(pattern=COMMUNE)
    province: str = Field(pattern=PROVINCE)
    procedure_code: str = same_as_dossier("procedure_code")
    officer_id: str | None = same_as_dossier("assigned_officer_id")
    due_at: UtcDateTime
    at: UtcDateTime


class DeadlineMessage(Model):
    """What travels on the tracker's input topic: a dossier's state, or the decision to alert."""

    dossier: TrackedDossier | None = None
    alert: DeadlineAlert | None = None
