"""Time-driven dossier alerts as pure functions: working days, due-soon and overdue decisions."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.codes import DossierStatus, Stage
from schemas.dossier import DossierStatusChanged
from schemas.notification import AlertKind, DeadlineAlert, NotificationKind, TrackedDossier
from schemas.times import VIETNAM, overdue_from

SATURDAY = 5


def one_working_day_before(due_at: datetime) -> datetime:
    """The same local clock time on the previous working day (Monday-Friday; public holidays not modelled)."""
    local = due_at.astimezone(VIETNAM) - timedelta(days=1)
    while local.weekday() >= SATURDAY:
        local -= timedelta(days=1)
    return local


def tracked(event: DossierStatusChanged) -> TrackedDossier | None:
    """The tracker's view of a dossier after this event; None for one only registered (nothing to track: it neither
    opens nor ends the dossier, so a closed view of it made an accepted dossier of the same time closed, `is_stale`)
    or open without a due date.

    A dossier closed by an event without a due date (withdrawn, stopped, rejected often carry none) still gives a
    closing view, so a due date tracked before stops alerting; its `due_at` is the event time (a closed dossier is
    dropped by the tracker, the date never read). Without it the officer got due-soon and overdue alerts for a
    dossier the citizen had withdrawn.
    """
    d = event.data
    due = d.due_at
    if d.status is DossierStatus.REGISTERED:
        return None
    if due is None:
        if d.status.is_open:
            return None
        due = event.time
    return TrackedDossier(
        dossier_code=d.dossier_code, commune=event.commune, province=event.province,
        procedure_code=d.procedure_code, officer_id=d.assigned_officer_id, due_at=due, is_open=d.status.is_open,
        as_of=event.time, event_id=event.id,
    )


KEEP_OPEN_PAST_DUE = timedelta(days=30)
"""How long an open dossier whose alerts have all fired is kept past due. A source that never sends the closing
event (a dossier handled on paper, a system retired) left its state for ever (state audit: 5,000 such dossiers,
5,000 states 400 days on). An event of it arriving after that makes a new state whose alerts have expired
(`timing.ALERT_WINDOW`, 3 days past due): nobody is told twice."""
KEEP_CLOSED = timedelta(days=7)
"""How long a closed dossier's state is kept after its closing event, so that an older event arriving later (a
re-sent status, a partition replayed) does not reopen it and alert its officer; then it is forgotten."""


FUTURE_MARGIN = timedelta(hours=1)
"""An event time further ahead of the tracker's clock is not believed for ordering (`trusted`)."""


def is_stale(latest: TrackedDossier, previous: TrackedDossier) -> bool:
    """Whether `latest` comes from an event older than `previous`'s; never for a state without its event time
    (written before `as_of` existed, or not trusted: the last to arrive wins, as it always had).

    At the same time the later stage wins (`schemas.codes.Stage`, the rule metrics' merge follows too): a closed
    state (ended: `tracked` gives none for a registered dossier) is not reopened by an open one, as a portal
    record's time is its latest date, so a status change without a new date (in progress -> withdrawn) has the time
    of the event before it, and a re-sent older one could not be told from a reopening. Within a stage the later
    due date wins (a request for more documents moves it later, often without a date of its own), then the later
    arrival (event ids are hashes; they do not order)."""
    if latest.as_of is None or previous.as_of is None:
        return False
    if latest.as_of == previous.as_of:
        return (stage(latest), latest.due_at) < (stage(previous), previous.due_at)
    return latest.as_of < previous.as_of


def stage(d: TrackedDossier) -> Stage:
    """The stage of the status `d` was made from: open, or ended (`tracked` makes no state of a registered one)."""
    return Stage.OPEN if d.is_open else Stage.ENDED


def trusted(latest: TrackedDossier, now: datetime | None) -> TrackedDossier:
    """`latest` without its event time when that lies more than `FUTURE_MARGIN` ahead of `now`: a sender's clock
    (or a typo) dated 2045 would otherwise make every real event of the dossier stale, and keep it closed till
    then."""
    if now is None or latest.as_of is None or latest.as_of <= now + FUTURE_MARGIN:
        return latest
    return latest.model_copy(update={"as_of": None})


def wake_at(d: TrackedDossier) -> datetime | None:
    """When the tracker must look at `d` again: its next alert if open (`next_alert_at`), else the time it is
    forgotten: open with every alert fired, `KEEP_OPEN_PAST_DUE` after it is past due; closed, `KEEP_CLOSED` after
    its closing event (None: at once, for a closed state without its event time)."""
    if d.is_open:
        at = next_alert_at(d)
        return at if at is not None else overdue_from(d.due_at) + KEEP_OPEN_PAST_DUE
    return None if d.as_of is None else d.as_of + KEEP_CLOSED


def forgotten(d: TrackedDossier, now: datetime) -> bool:
    """Whether the tracker drops `d` at `now`: closed (at its wake, `wake_at`), or open with nothing left to fire
    and `KEEP_OPEN_PAST_DUE` past due."""
    if not d.is_open:
        return True
    return next_alert_at(d) is None and now >= overdue_from(d.due_at) + KEEP_OPEN_PAST_DUE


def merge(previous: TrackedDossier | None, latest: TrackedDossier) -> TrackedDossier:
    """Keep 'already alerted' flags unless the due date moved (a new due date earns new alerts) or the dossier was
    closed in between (a reopened dossier is a new case)."""
    if previous is None or previous.due_at != latest.due_at or not previous.is_open:
        return latest
    return latest.model_copy(update={"alerted_due_soon": previous.alerted_due_soon,
                                     "alerted_overdue": previous.alerted_overdue})


def alerts_due(d: TrackedDossier, now: datetime) -> list[DeadlineAlert]:
    """Alerts to fire now: each kind at most once per due date; none for a closed dossier. Overdue from the end of
    the due day (`overdue_from`, as metrics' gauge); due soon from the due time a working day before."""
    if not d.is_open:
        return []
    kind: AlertKind | None
    if now >= overdue_from(d.due_at):
        kind = None if d.alerted_overdue else NotificationKind.OVERDUE
    elif now >= one_working_day_before(d.due_at):
        kind = None if d.alerted_due_soon else NotificationKind.DUE_SOON
    else:
        kind = None
    if kind is None:
        return []
    return [DeadlineAlert(
        id=f"{d.commune}:{d.dossier_code}:{kind.value}:{d.due_at.isoformat()}", kind=kind, dossier_code=d.dossier_code,
        commune=d.commune, province=d.province, procedure_code=d.procedure_code, officer_id=d.officer_id,
        due_at=d.due_at, at=now,
    )]


def next_alert_at(d: TrackedDossier) -> datetime | None:
    """The earliest time at which `alerts_due` returns an alert for `d` as it stands; None if it never will.

    For clocks that do not go back, `alerts_due(d, now)` is non-empty exactly when this is not None and
    `now >= next_alert_at(d)`: the deadline index (`deadline_index`) keys each open dossier by it, so a tick
    touches only the dossiers whose time has come. Once overdue has fired the due-soon window is in the past
    (it fired at a time after the due day), so nothing is left to fire.
    """
    if not d.is_open or d.alerted_overdue:
        return None
    if not d.alerted_due_soon:
        return one_working_day_before(d.due_at)
    return overdue_from(d.due_at)


def mark(d: TrackedDossier, alert: DeadlineAlert) -> TrackedDossier:
    """The dossier with this alert recorded as fired (only if it is about the current due date)."""
    if alert.due_at != d.due_at:
        return d
    field = "alerted_overdue" if alert.kind is NotificationKind.OVERDUE else "alerted_due_soon"
    return d.model_copy(update={field: True})
