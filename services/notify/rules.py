"""The rules table: canonical events (and deadline alerts) -> notification requests. Pure.

Read `RULES` top to bottom: for each event type, which condition makes it which
message for whom (who: `recipients`). Every registered event type has an entry (`NO_NOTIFICATION`
when nobody is told; a test fails on a missing one). Webhook subscriptions and
deadline alerts follow the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import orjson

from schemas import wire
from schemas.announcement import (
    ANNOUNCEMENT_SCHEDULED,
    BROADCAST_COMPLETED,
    BROADCAST_FAILED,
    BROADCAST_STARTED,
    AnnouncementScheduled,
    Broadcast,
)
from schemas.codes import DossierStatus, Locale, Priority
from schemas.deadletter import Rejection, internal_error
from schemas.dossier import DOSSIER_STATUS_CHANGED, DossierStatusChanged
from schemas.envelope import Event
from schemas.mobile_team import (
    SUPPORT_ANSWERED,
    TRAINING_HELD,
    VISIT_COMPLETED,
    VISIT_SCHEDULED,
    VISIT_STARTED,
)
from schemas.notification import Audience, ChannelKind, DeadlineAlert, NotificationRequest, Recipient, TrackedDossier
from schemas.notification import NotificationKind as K
from services.notify import deadlines
from services.notify.directory import Directory
from services.notify.params import (
    alert_params,
    announcement_params,
    broadcast_failed_params,
    dossier_params,
    visit_params,
)
from services.notify.policy import notification_id
from services.notify.recipients import (
    Target,
    applicant,
    centre,
    cluster_operators,
    emergency_audience,
    failed_cluster_operators,
    staff,
    village_contacts,
)
from services.notify.subscribers import Registry, without_applicant_block
from services.notify.timing import (
    alert_over,
    announcement_over,
    failure_over,
    the_day_before,
    visit_held,
    window_passed,
)

# --- when (deferrals and expiries: `timing`) -------------------------------------------------------

def status_is(*statuses: DossierStatus) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, DossierStatusChanged) and e.data.status in statuses


def is_emergency(e: Event) -> bool:
    """The event says it is an emergency: an announcement or broadcast of an emergency category."""
    return isinstance(e.data, AnnouncementScheduled | Broadcast) and e.data.priority is Priority.EMERGENCY


def event_priority(e: Event) -> Priority:
    """The event's own priority: a failed storm-warning broadcast is as urgent as the warning."""
    return Priority.EMERGENCY if is_emergency(e) else Priority.ROUTINE


def always(_: Event) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """When an event of the entry's type matches `when`, a `kind` message goes to each of `to`."""

    name: str
    when: Callable[[Event], bool]
    kind: K
    to: Callable[[Event, Directory], list[Target]]
    params: Callable[[Event], dict[str, str]]
    priority: Priority | Callable[[Event], Priority] = Priority.ROUTINE
    not_before: Callable[[Event], datetime | None] = lambda e: None
    expires: Callable[[Event], datetime | None] = lambda e: None
    """When the message stops making sense (the dispatcher does not send it from then on: outcome expired)."""

    def priority_of(self, e: Event) -> Priority:
        return self.priority if isinstance(self.priority, Priority) else self.priority(e)


def to_applicant(name: str, status: DossierStatus, kind: K) -> Rule:
    """A dossier's status message to its applicant: stale `STATUS_MESSAGE_WINDOW` after the event."""
    return Rule(name, status_is(status), kind, applicant, dossier_params, expires=window_passed)


NO_NOTIFICATION: tuple[Rule, ...] = ()
"""The explicit entry of an event type that tells nobody (webhook subscribers still receive it)."""

S = DossierStatus
RULES: dict[str, tuple[Rule, ...]] = {
    DOSSIER_STATUS_CHANGED: (
        to_applicant("dossier.accepted", S.ACCEPTED, K.DOSSIER_ACCEPTED),
        to_applicant("dossier.documents-requested", S.ADDITIONAL_DOCUMENTS_REQUESTED, K.DOCUMENTS_REQUESTED),
        to_applicant("dossier.payment-requested", S.PAYMENT_REQUESTED, K.PAYMENT_REQUESTED),
        to_applicant("dossier.rejected", S.REJECTED, K.DOSSIER_REJECTED),
        to_applicant("dossier.result-ready", S.PROCESSED, K.RESULT_READY),
        to_applicant("dossier.result-returned", S.RETURNED, K.RESULT_RETURNED),
    ),
    VISIT_SCHEDULED: (
        Rule("visit.day-before", always, K.VISIT_TOMORROW, village_contacts, visit_params, not_before=the_day_before,
             expires=visit_held),
    ),
    VISIT_STARTED: NO_NOTIFICATION,
    VISIT_COMPLETED: (Rule("visit.summary", always, K.VISIT_SUMMARY, centre, visit_params, expires=window_passed),),
    TRAINING_HELD: NO_NOTIFICATION,
    SUPPORT_ANSWERED: NO_NOTIFICATION,
    ANNOUNCEMENT_SCHEDULED: (
        Rule("announcement.scheduled", lambda e: not is_emergency(e), K.ANNOUNCEMENT_SCHEDULED, cluster_operators,
             announcement_params, expires=announcement_over),
        Rule("announcement.emergency", is_emergency, K.EMERGENCY, emergency_audience, announcement_params,
             Priority.EMERGENCY, expires=announcement_over),
    ),
    BROADCAST_STARTED: NO_NOTIFICATION,
    BROADCAST_COMPLETED: NO_NOTIFICATION,
    BROADCAST_FAILED: (
        Rule("broadcast.failed", always, K.BROADCAST_FAILED, failed_cluster_operators, broadcast_failed_params,
             event_priority, expires=failure_over),
    ),
}
"""Deadline alerts (due within one working day, overdue) are time-driven: see `for_alert`."""


def _request(e_id: str, e_type: str, rule: str, kind: K, target: Target, params: dict[str, str], *,
             source: str | None, commune: str, province: str, time: datetime, priority: Priority = Priority.ROUTINE,
             not_before: datetime | None = None, expires_at: datetime | None = None, payload: str | None = None,
             traceparent: str | None = None) -> NotificationRequest:
    recipient, channel, audience = target
    return NotificationRequest(
        notification_id=notification_id(e_id, rule, recipient.ref, source), event_id=e_id, event_source=source,
        event_type=e_type, rule=rule,
        kind=kind, channel=channel, audience=audience, priority=priority, recipient=recipient, params=params,
        payload=payload, commune=commune, province=province, event_time=time, not_before=not_before,
        expires_at=expires_at, traceparent=traceparent,
    )


class Planned(NamedTuple):
    requests: list[NotificationRequest]
    unaddressed: tuple[str, ...]
    """Rules the event matched that found nobody to tell (no directory contact; an applicant without any)."""


APPLICANT_RULES = frozenset(rule.name for rs in RULES.values() for rule in rs if rule.to is applicant)
"""Rules for the applicant, who may have left no contact: finding nobody there is expected, not a directory gap."""


def for_event(event: Event, directory: Directory, registry: Registry) -> list[NotificationRequest]:
    """Every notification one canonical event asks for (`plan`'s requests)."""
    return plan(event, directory, registry).requests


def plan(event: Event, directory: Directory, registry: Registry) -> Planned:
    """Every notification one canonical event asks for: rule matches, then webhook subscriptions; and the rules
    that matched but found nobody.

    Each request carries the event's `traceparent`, so its delivery logs and provider calls name the same trace.
    """
    out: list[NotificationRequest] = []
    unaddressed: list[str] = []
    for rule in RULES.get(event.type, NO_NOTIFICATION):
        if not rule.when(event):
            continue
        if not (targets := rule.to(event, directory)):
            unaddressed.append(rule.name)
        out += [_request(event.id, event.type, rule.name, rule.kind, target, rule.params(event),
                         source=event.source, commune=event.commune, province=event.province, time=event.time,
                         priority=rule.priority_of(event), not_before=rule.not_before(event),
                         expires_at=rule.expires(event), traceparent=event.traceparent)
                for target in targets]
    # an emergency (a warning, or its broadcast failing) reaches subscribers (a disaster-response system, say) in the
    # emergency lane, as it reaches people
    webhook_priority = event_priority(event)
    for sub in registry.matching(event.type, event.commune, event.province):
        target = (Recipient(ref=f"subscriber:{sub.name}", url=sub.url), ChannelKind.WEBHOOK, Audience.SYSTEM)
        out.append(_request(event.id, event.type, f"webhook:{sub.name}", K.WEBHOOK, target, {},
                            source=event.source, commune=event.commune, province=event.province, time=event.time,
                            priority=webhook_priority, payload=structured(event, sub.include_personal_data),
                            traceparent=event.traceparent))
    return Planned(out, tuple(unaddressed))


class Derived(NamedTuple):
    requests: list[NotificationRequest]
    tracked: TrackedDossier | None
    """The deadline tracker's view of a dossier with a due date (when tracking is on)."""
    unaddressed: tuple[str, ...] = ()
    """`Planned.unaddressed`: the shell logs and counts them (a rule finding nobody is never silent)."""
    event: Event | None = None


def for_record(headers: Sequence[tuple[str, bytes]], value: bytes | None, directory: Directory, registry: Registry,
               track: bool = False) -> Derived | Rejection:
    """One canonical record's notifications (and tracked dossier), or why it is skipped. Never raises.

    A record that is no valid event is a Rejection with the reason `wire.decode` names; an unexpected
    exception in the rules is one with reason `internal_error` (type and file:line only).
    """
    try:
        event = wire.decode(headers, value)
        tracked = deadlines.tracked(event) if track and isinstance(event, DossierStatusChanged) else None
        planned = plan(event, directory, registry)
        return Derived(planned.requests, tracked, planned.unaddressed, event)
    except wire.InvalidRecord as exc:
        return Rejection(reason=exc.reason, field=exc.field, message=exc.message)
    except Exception as exc:  # a bug met by one record: the shell skips it, counted, and goes on
        return internal_error(exc)


def for_alert(alert: DeadlineAlert, directory: Directory) -> list[NotificationRequest]:
    """Due-soon and overdue alerts go to the responsible officer and the centre head, until `alert_over`."""
    contacts = directory.officer(alert.commune, alert.officer_id) + directory.of(alert.commune).centre_head
    targets = {t[0].ref: t for t in staff(contacts)}
    params = alert_params(alert)
    return [
        _request(alert.id, f"deadline.{alert.kind.value}", alert_rule(alert), alert.kind, t, params, source=None,
                 commune=alert.commune, province=alert.province, time=alert.at, expires_at=alert_over(alert))
        for t in targets.values()
    ]


def alert_rule(alert: DeadlineAlert) -> str:
    return f"dossier.{alert.kind.value}"


def structured(event: Event, include_personal_data: bool) -> str:
    """The event as structured-mode CloudEvents JSON; the applicant block removed unless the subscriber may see it."""
    doc = orjson.loads(event.model_dump_json(exclude_none=True))
    return orjson.dumps(doc).decode() if include_personal_data else without_applicant_block(doc)


def locale_of(request: NotificationRequest) -> Locale:
    return request.recipient.locale
