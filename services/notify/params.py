"""What a message says: the template parameters of each kind of event, as display strings. Pure.

Every parameter is bounded whatever the event holds: fields are bounded by the schemas, and a list (requested
documents, clusters, villages) is cut to its first items and how many more. Parameters go to the SMS and e-mail
templates, to ZNS as template data, and into ledger deferrals and dead letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from schemas.envelope import Event
from schemas.mobile_team import VisitScheduledEvent
from schemas.notification import DeadlineAlert
from schemas.times import VIETNAM


def day(t: datetime | None) -> str:
    return t.astimezone(VIETNAM).strftime("%d/%m/%Y") if t else "-"


def moment(t: datetime) -> str:
    return t.astimezone(VIETNAM).strftime("%H:%M %d/%m/%Y")


LIST_ITEMS, ITEM_CHARS = 5, 80
"""A list parameter shows this many items of at most this many characters, then "+k" for the k left out: every
parameter is bounded (SMS, ZNS template data, e-mail, ledger entries and dead letters), whatever the event lists."""


def shortened(text: str, chars: int, mark: str = "…") -> str:
    """`text`, or its first characters ending `mark` within `chars` in all (no space before the mark)."""
    return text if len(text) <= chars else text[:chars - len(mark)].rstrip() + mark


def listing(items: Sequence[str]) -> str:
    """"a, b, c, d, e, +7" for twelve items; "-" for none."""
    shown = [i if len(i) <= ITEM_CHARS else i[:ITEM_CHARS - 1] + "…" for i in items[:LIST_ITEMS]]
    more = [f"+{len(items) - len(shown)}"] if len(items) > len(shown) else []
    return ", ".join(shown + more) or "-"


def dossier_params(e: Event) -> dict[str, str]:
    d = e.data
    amount = sum(f.amount_vnd for f in d.fees)
    return {
        "dossier_code": d.dossier_code, "procedure": d.procedure_name or d.procedure_code, "due_date": day(d.due_at),
        "documents": listing(d.requested_documents), "reason": d.rejection_reason or "-",
        "amount": f"{amount:,}".replace(",", "."), "date": day(d.returned_at or d.ended_at),
    }


def visit_params(e: Event) -> dict[str, str]:
    v = e.data
    when = v.scheduled_for if isinstance(e, VisitScheduledEvent) else v.completed_at
    counts = {} if isinstance(e, VisitScheduledEvent) else {
        "households": str(v.households_visited), "people": str(v.people_assisted),
        "dossiers": str(v.dossiers_submitted), "accounts": str(v.accounts_activated),
    }
    return {"village": v.village, "team": v.team_id, "date": moment(when), **counts}


def announcement_params(e: Event) -> dict[str, str]:
    a = e.data
    return {"title": a.title, "clusters": listing(a.target_clusters or a.target_villages), "date": moment(a.starts_at)}


def broadcast_failed_params(e: Event) -> dict[str, str]:
    b = e.data
    return {"cluster": b.cluster_id, "announcement": b.announcement_id, "reason": b.failure_reason}


def alert_params(alert: DeadlineAlert) -> dict[str, str]:
    return {"dossier_code": alert.dossier_code, "due_date": moment(alert.due_at)}
