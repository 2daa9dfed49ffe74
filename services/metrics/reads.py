"""What each merge reads of an event: Protocols, so a merge takes a full model or a slim view alike.

`schemas.metrics_views` declares exactly these fields (the views metrics decodes with, ADR 0023); the
registered full models have them too, which lets tests run the full decode as the oracle of the slim one
through the same merges. Members are read-only properties, so a model's narrower field type satisfies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from schemas.codes import AnnouncementCategory, Channel, DossierStatus, SupportChannel, Timeliness


class Stamped(Protocol):
    """Any canonical event: the merges order states by (event time, event id) (a dossier's by (event time, stage,
    event id), `state.merge_dossier`)."""

    @property
    def id(self) -> str: ...
    @property
    def time(self) -> datetime: ...


class FeeLine(Protocol):
    @property
    def amount_vnd(self) -> int: ...


class DossierFields(Protocol):
    @property
    def channel(self) -> Channel: ...
    @property
    def status(self) -> DossierStatus: ...
    @property
    def received_at(self) -> datetime | None: ...
    @property
    def due_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def fees(self) -> Sequence[FeeLine]: ...
    @property
    def paid_online(self) -> bool: ...
    @property
    def digitised(self) -> bool: ...
    @property
    def timeliness(self) -> Timeliness | None: ...


class DossierChange(Stamped, Protocol):
    @property
    def data(self) -> DossierFields: ...


class VisitCounts(Protocol):
    @property
    def households_visited(self) -> int: ...
    @property
    def people_assisted(self) -> int: ...
    @property
    def dossiers_submitted(self) -> int: ...
    @property
    def accounts_activated(self) -> int: ...


class VisitDone(Stamped, Protocol):
    @property
    def data(self) -> VisitCounts: ...


class Attendance(Protocol):
    @property
    def attendees(self) -> int: ...


class TrainingDone(Stamped, Protocol):
    @property
    def data(self) -> Attendance: ...


class SupportFields(Protocol):
    @property
    def channel(self) -> SupportChannel: ...


class SupportDone(Stamped, Protocol):
    @property
    def data(self) -> SupportFields: ...


class ScheduleFields(Protocol):
    @property
    def category(self) -> AnnouncementCategory: ...
    @property
    def starts_at(self) -> datetime: ...


class Scheduling(Stamped, Protocol):
    @property
    def data(self) -> ScheduleFields: ...


class BroadcastFields(Protocol):
    @property
    def cluster_id(self) -> str: ...
    @property
    def category(self) -> AnnouncementCategory: ...


class StartedFields(BroadcastFields, Protocol):
    @property
    def started_at(self) -> datetime: ...


class BroadcastEnd(Stamped, Protocol):
    """A broadcast that failed: no start time."""

    @property
    def data(self) -> BroadcastFields: ...


class BroadcastPlayed(Stamped, Protocol):
    """A broadcast started or completed: it carries the time playback started."""

    @property
    def data(self) -> StartedFields: ...
