"""The registry topics notify reads and writes (all defined in `schemas.topics`).

- ledger: compacted, key = notification id; the durable record of what was sent or deferred, so a
  redelivered event never reaches a provider twice as a success.
- deadlines: the deadline tracker's input (dossier states and alert decisions), key = commune.
- alerts: due-soon / overdue alerts the tracker fired, key = commune.
- replays: dead-lettered notifications sent again under a new id (`commune-bus notify-dlq replay`), key = commune.
- keys: the applicants' data keys (read only: an applicant's contact is opened at delivery, ADR 0015).
- erasures: one notice per erasure, told to the webhook subscribers that receive applicants' data (ADR 0035).
"""

from __future__ import annotations

from schemas.topics import (
    DLQ_NOTIFY,
    EVENTS_ANNOUNCEMENT,
    EVENTS_DOSSIER,
    EVENTS_MOBILE_TEAM,
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    NOTIFY_ALERTS,
    NOTIFY_DEADLINES,
    NOTIFY_LEDGER,
    NOTIFY_REPLAYS,
    NOTIFY_STATUS,
    PRIVACY_ERASURES,
    scoped,
)

INPUTS = (EVENTS_DOSSIER, EVENTS_MOBILE_TEAM, EVENTS_ANNOUNCEMENT, NOTIFY_ALERTS, NOTIFY_REPLAYS)
KEYS = (KEYS_APPLICANTS, KEYS_DEAD_LETTERS)
OWN = (NOTIFY_STATUS, DLQ_NOTIFY, NOTIFY_LEDGER, NOTIFY_DEADLINES, NOTIFY_ALERTS)
NOTICES = (PRIVACY_ERASURES,)


class Names:
    """Every topic name notify uses, under one namespace."""

    def __init__(self, namespace: str) -> None:
        self.dossier = scoped(EVENTS_DOSSIER, namespace).name
        self.mobile_team = scoped(EVENTS_MOBILE_TEAM, namespace).name
        self.announcement = scoped(EVENTS_ANNOUNCEMENT, namespace).name
        self.alerts = scoped(NOTIFY_ALERTS, namespace).name
        self.replays = scoped(NOTIFY_REPLAYS, namespace).name
        self.status = scoped(NOTIFY_STATUS, namespace).name
        self.dlq = scoped(DLQ_NOTIFY, namespace).name
        self.ledger = scoped(NOTIFY_LEDGER, namespace).name
        self.deadlines = scoped(NOTIFY_DEADLINES, namespace).name
        self.erasures = scoped(PRIVACY_ERASURES, namespace).name
        self.specs = list({t.name: scoped(t, namespace) for t in (*INPUTS, *OWN, *KEYS, *NOTICES)}.values())
