"""Dossier lifecycles: received -> in progress -> (5 / 6) -> processed (9) -> returned (10), or 3 / 7.

Shares are domain figures: ~50% online, ~95% of completed dossiers early or on
time, a few rejected at intake or withdrawn. All times follow the centre's
office calendar except online submission, which happens at any hour.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from typing import Any

from schemas.codes import Channel, DossierStatus
from schemas.dossier import DOSSIER_STATUS_CHANGED
from services.simulator import catalogue as cat
from services.simulator.people import applicant
from services.simulator.workdays import after_office_delay, at, due_date, next_office_time, next_working_day
from services.simulator.world import Commune, Sequences, Step

LATE_SHARE = 0.05
WITHDRAWN_SHARE = 0.02
REJECTED_SHARE = {Channel.ONLINE: 0.05, Channel.COUNTER: 0.015, Channel.POSTAL: 0.04, Channel.MOBILE_TEAM: 0.02}
ADDITIONAL_DOCUMENTS_SHARE = 0.07
MINUTE = timedelta(minutes=1)
SAME_DAY_CUTOFF = time(15, 30)
"""Same-day procedures received later than this are due the next working day."""


def _pick_channel(rng: random.Random, procedure: cat.Procedure) -> Channel:
    if rng.random() < procedure.online_share:
        return Channel.ONLINE
    return rng.choices(list(cat.CHANNEL_WEIGHTS), weights=list(cat.CHANNEL_WEIGHTS.values()))[0]


class _Dossier:
    """Accumulates the dossier's state; each `emit` snapshots it as one status-changed step."""

    def __init__(self, commune: Commune, code: str, data: dict[str, Any]) -> None:
        self.commune, self.code, self.data = commune, code, data
        self.steps: list[Step] = []
        self.history: list[tuple[datetime, int]] = []
        self.now: datetime | None = None

    def emit(self, when: datetime, status: DossierStatus, **changes: Any) -> datetime:
        if self.now is not None:
            when = max(when, self.now + MINUTE)  # strictly ordered, one minute apart at least
        self.now = when
        self.data.update(changes, status=int(status))
        snapshot = {k: (list(v) if isinstance(v, list) else v) for k, v in self.data.items()}
        self.history.append((when, int(status)))
        self.steps.append(Step(when, DOSSIER_STATUS_CHANGED, self.code, snapshot, tuple(self.history)))
        return when


def dossier_lifecycle(rng: random.Random, commune: Commune, arrival: datetime, seq: Sequences) -> list[Step]:
    procedure = rng.choices(cat.PROCEDURES, weights=[p.weight for p in cat.PROCEDURES])[0]
    channel = _pick_channel(rng, procedure)
    submitted = arrival if channel is Channel.ONLINE else next_office_time(arrival)
    day = f"{submitted:%y%m%d}"
    code = f"H{commune.province}.{commune.code}-{day}-{seq.next('dossier', commune.code, day):04d}"
    names = cat.DOCUMENTS[procedure.field_code]
    documents = [
        {"name": name, "digitised": rng.random() < 0.75, "reused": rng.random() < 0.2}
        for name in rng.sample(names, rng.randint(1, len(names)))
    ]
    fee_name = f"Lệ phí {procedure.name[:1].lower()}{procedure.name[1:]}"[:300]
    fees = [{"name": fee_name, "amount_vnd": procedure.fee_vnd}] if procedure.fee_vnd else []
    online = channel is Channel.ONLINE
    d = _Dossier(commune, code, {
        "dossier_code": code, "procedure_code": procedure.code, "procedure_name": procedure.name,
        "field_code": procedure.field_code, "channel": channel.value, "submitted_at": submitted,
        "handling_unit": commune.centre, "documents": documents, "fees": fees, "paid_online": False,
        "digitised": any(doc["digitised"] for doc in documents),
        "vneid_verified": rng.random() < (0.85 if online else 0.3),
        "applicant": applicant(rng, commune.province, f"{rng.choice(commune.villages)}, {commune.name}"),
    })
    if online:
        d.emit(submitted, DossierStatus.REGISTERED)
        decided = after_office_delay(submitted, rng.uniform(10, 240))
    else:
        decided = submitted + timedelta(minutes=rng.uniform(3, 20))
    if rng.random() < REJECTED_SHARE[channel]:
        d.emit(decided, DossierStatus.REJECTED, rejected_at=decided, rejection_reason=rng.choice(cat.REJECTION_REASONS))
        return d.steps
    same_day_cutoff = procedure.working_days == 0 and next_office_time(decided).time() > SAME_DAY_CUTOFF
    due = due_date(decided, 1 if same_day_cutoff else procedure.working_days)
    received = d.emit(decided, DossierStatus.ACCEPTED, received_at=decided, due_at=due,
                      assigned_officer_id=f"cb{commune.code}.{rng.randint(1, 9):02d}")
    started = d.emit(after_office_delay(received, rng.uniform(2, 30 if procedure.working_days == 0 else 240)),
                     DossierStatus.IN_PROGRESS)
    if procedure.working_days and rng.random() < ADDITIONAL_DOCUMENTS_SHARE:
        asked = d.emit(after_office_delay(started, rng.uniform(30, 600)), DossierStatus.ADDITIONAL_DOCUMENTS_REQUESTED,
                       requested_documents=rng.sample(cat.MISSING_DOCUMENT_REQUESTS, rng.randint(1, 2)))
        if rng.random() < 0.15:
            d.emit(after_office_delay(asked, rng.uniform(60, 3000)), DossierStatus.WITHDRAWN)
            return d.steps
        supplied = after_office_delay(asked, rng.uniform(60, 2000))
        new_due = due_date(supplied, max(2, procedure.working_days // 2))
        changes = [{"previous_due_at": due, "new_due_at": new_due, "changed_at": supplied}]
        due = new_due
        started = d.emit(supplied, DossierStatus.IN_PROGRESS, due_at=due, due_date_changes=changes,
                         requested_documents=[])
    if rng.random() < WITHDRAWN_SHARE:
        d.emit(after_office_delay(started, rng.uniform(30, 1500)), DossierStatus.WITHDRAWN)
        return d.steps
    ended = _end_time(rng, started, due, late=rng.random() < LATE_SHARE)
    if rng.random() < procedure.payment_share:
        payment_at = after_office_delay(started, rng.uniform(10, max(20.0, (ended - started).total_seconds() / 120)))
        if payment_at < ended:
            obligation = {"name": "Lệ phí trước bạ nhà, đất", "amount_vnd": rng.randrange(200, 8000) * 1000}
            d.emit(payment_at, DossierStatus.PAYMENT_REQUESTED, fees=[*d.data["fees"], obligation])
    has_fees = bool(d.data["fees"]) and any(f["amount_vnd"] for f in d.data["fees"])
    paid_online = has_fees and rng.random() < (0.75 if online else 0.12)
    result_digitised = rng.random() < 0.6
    ended = d.emit(ended, DossierStatus.PROCESSED, ended_at=ended, paid_online=paid_online,
                   result_digitised=result_digitised)
    if online and result_digitised:
        returned = ended + timedelta(minutes=rng.uniform(1, 30))
    else:
        returned = after_office_delay(ended, rng.uniform(5, 900))
    d.emit(returned, DossierStatus.RETURNED, returned_at=returned)
    return d.steps


def _end_time(rng: random.Random, started: datetime, due: datetime, late: bool) -> datetime:
    """Early or on time: an office instant no later than the due date, skewed early. Late: 1-3 working days after it."""
    if late:
        day = due.date()
        for _ in range(rng.randint(1, 3)):
            day = next_working_day(day)
        return after_office_delay(at(day, time(7, 30)), rng.uniform(0, 400))
    first = after_office_delay(started, rng.uniform(5, 30))
    if first >= due:
        return first
    return min(next_office_time(first + rng.betavariate(1.3, 2.2) * (due - first)), due)
