"""When a rule's message may go and when it stops making sense: deferrals and expiries of the rules table. Pure.

A message past its `expires` is not sent (outcome expired): a province re-syncing last year's events must not
text every applicant, nor wake the villages at 02:00 for a storm that is over.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.dossier import DossierStatusChanged
from schemas.envelope import Event
from schemas.notification import DeadlineAlert, NotificationKind
from schemas.times import VIETNAM, overdue_from

ANNOUNCEMENT_HORIZON = timedelta(hours=24)
"""An announcement without an end is over this long after it starts."""


def announcement_over(e: Event) -> datetime | None:
    """A warning (or any announcement) is stale once its broadcast has ended: a re-synced storm of last year must
    not wake the villages at 02:00."""
    a = e.data
    end: datetime = a.ends_at or a.starts_at + ANNOUNCEMENT_HORIZON
    return end


def failure_over(e: Event) -> datetime | None:
    """A failed broadcast is news to its cluster's operators for `ANNOUNCEMENT_HORIZON` after it failed, or after it
    was reported when that came later (a cluster that reports on reconnecting, 30 h on, still pages them): replaying
    last year's announcement topic must not page them (a storm's failure goes in the emergency lane, at any hour)."""
    at: datetime = max(e.data.failed_at, e.time) + ANNOUNCEMENT_HORIZON
    return at


VISIT_HORIZON = timedelta(days=366)
"""A visit scheduled further ahead of its event than this is not believed (a mistyped year: 2095 for 2025)."""


def visit_held(e: Event) -> datetime | None:
    """A visit's day-before message says "tomorrow": it is stale once the visit's day has begun (Vietnam time), so a
    visit scheduled at short notice, or a message deferred past the quiet hours into the visit's day, does not tell
    villagers the team comes tomorrow on the day it comes (time audit). A visit more than `VISIT_HORIZON` after its
    event is stale at once: it was deferred for decades, its ledger entry rewritten every month (time audit)."""
    at: datetime = e.data.scheduled_for
    if at > e.time + VISIT_HORIZON:
        return e.time
    day: datetime = at.astimezone(VIETNAM).replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    return day


STATUS_MESSAGE_WINDOW = timedelta(days=30)
"""A dossier's status message to its applicant, and a visit's summary to the centre, are stale this long after the
event, or after the dossier's due date when that is later: a province re-syncing last year's dossiers must not text
every applicant of them. Long, and counted from the due date too, because a portal payload's time is its latest
date or progress step: a request for documents on a long procedure, with no progress step, carries the day the
dossier was received, which may be weeks before the request."""


def window_passed(e: Event) -> datetime | None:
    """A status message (or a visit's summary) expires `STATUS_MESSAGE_WINDOW` after its event or its due date."""
    latest: datetime = e.time
    if isinstance(e, DossierStatusChanged):
        due = [d for d in (e.data.due_at, *(c.new_due_at for c in e.data.due_date_changes)) if d is not None]
        latest = max([latest, *due])
    return latest + STATUS_MESSAGE_WINDOW


def the_day_before(e: Event) -> datetime | None:
    """Village contacts hear of a visit at 08:00 the day before (or at once if that is past)."""
    local: datetime = e.data.scheduled_for.astimezone(VIETNAM) - timedelta(days=1)
    return local.replace(hour=8, minute=0, second=0, microsecond=0)


ALERT_WINDOW = timedelta(days=3)
"""An overdue alert is news to the officer and the centre head for this long after the dossier is past due; a
due-soon alert until it is past due (the overdue one follows). The tracker fires one as soon as it holds an open
dossier past its time, so a province re-syncing last year's history, whose dossiers' closing events come later in
the stream than their opening ones, would have mailed them an "overdue" for every dossier closed long ago (time
audit)."""


def alert_over(alert: DeadlineAlert) -> datetime:
    """When a deadline alert stops making sense (`ALERT_WINDOW`), counted from when the dossier is overdue
    (`overdue_from`: the end of the due day; review: a due-soon alert for a date without a time of day, fired the
    working day before, expired at the due day's first minute, never sent)."""
    past_due = overdue_from(alert.due_at)
    return past_due + ALERT_WINDOW if alert.kind is NotificationKind.OVERDUE else past_due
