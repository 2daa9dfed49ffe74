"""The one registry of event families and canonical event types.

`FAMILIES` is the single list: each family names the event models it carries
and what its topics hold. Everything else is derived from it: the indexes below
(`EVENTS_BY_FAMILY`, `EVENT_TYPES`, `FAMILY_OF_TYPE`), the raw and canonical
topics (`schemas.topics`), decoding (`schemas.wire`), the JSON Schema files
(`schemas.export`) and the AsyncAPI document (`schemas.asyncapi`). Services keep
one table entry per event type (`services.notify.rules.RULES`,
`services.metrics.handlers.HANDLERS`); a test fails when one is missing. The
step-by-step guide is `docs/adding-an-event-family.md`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, get_args, get_origin

from pydantic import BaseModel

from schemas.announcement import (
    AnnouncementScheduledEvent,
    BroadcastCompletedEvent,
    BroadcastFailedEvent,
    BroadcastStartedEvent,
)
from schemas.dossier import DossierStatusChanged
from schemas.envelope import TYPE_PREFIX, Event
from schemas.mobile_team import (
    SupportAnsweredEvent,
    TrainingHeldEvent,
    VisitCompletedEvent,
    VisitScheduledEvent,
    VisitStartedEvent,
)


class Family(StrEnum):
    DOSSIER = "dossier"
    MOBILE_TEAM = "mobile-team"
    ANNOUNCEMENT = "announcement"


@dataclass(frozen=True)
class FamilySpec:
    """One family: its event models, and what its raw and canonical topics carry (their descriptions)."""

    events: tuple[type[Event], ...]
    inbound: str
    """What commune systems send on the raw topic, e.g. "dossier lifecycle events"."""
    canonical: str
    """What the canonical topic holds once validated."""
    other_raw_shapes: str = ""
    """Shapes the raw topic accepts besides canonical CloudEvents JSON (intake translates them)."""


FAMILIES: dict[Family, FamilySpec] = {
    Family.DOSSIER: FamilySpec(
        events=(DossierStatusChanged,),
        inbound="dossier lifecycle events", canonical="dossier lifecycle events",
        other_raw_shapes="the national portal's dossier sync shape with a `commune-code` header",
    ),
    Family.MOBILE_TEAM: FamilySpec(
        events=(VisitScheduledEvent, VisitStartedEvent, VisitCompletedEvent, TrainingHeldEvent, SupportAnsweredEvent),
        inbound="mobile-team activity", canonical="mobile-team activity",
    ),
    Family.ANNOUNCEMENT: FamilySpec(
        events=(AnnouncementScheduledEvent, BroadcastStartedEvent, BroadcastCompletedEvent, BroadcastFailedEvent),
        inbound="loudspeaker announcements and broadcasts", canonical="announcements and broadcasts",
    ),
}

EVENTS_BY_FAMILY: dict[Family, tuple[type[Event], ...]] = {}
EVENT_TYPES: dict[str, type[Event]] = {}
"""CloudEvents `type` -> model: what `schemas.wire.decode` accepts."""
FAMILY_OF_TYPE: dict[str, Family] = {}

_TYPE_NAME = re.compile(r"^(?P<family>[a-z][a-z0-9-]*)\.[a-z][a-z0-9-]*\.v[1-9][0-9]*$")


class RegistryError(ValueError):
    """An event model that cannot be registered as it is (name, `type` field, duplicate)."""


def type_name(model: type[Event]) -> str:
    """The model's CloudEvents `type` (the default of its `type` field)."""
    default = model.model_fields["type"].default
    if not isinstance(default, str):
        raise RegistryError(f"{model.__name__}: the `type` field needs a default naming the event type")
    return default


def data_model(model: type[Event]) -> type[BaseModel]:
    """The model of the event's `data`."""
    annotation = model.model_fields["data"].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise RegistryError(f"{model.__name__}: `data` must be a pydantic model")
    return annotation


def check(family: Family, model: type[Event]) -> str:
    """The model's type name, after checking it can join `family`: `vn.communebus.<family>.<event>.v<N>`,
    a `type` field that is `Literal[<that name>]` (decoding and JSON Schema rely on it), a pydantic `data`."""
    name = type_name(model)
    match = _TYPE_NAME.match(name.removeprefix(TYPE_PREFIX))
    if not name.startswith(TYPE_PREFIX) or match is None or match["family"] != family.value:
        raise RegistryError(f"{name!r}: a {family.value} event type is named {TYPE_PREFIX}{family.value}.<event>.v<N>")
    annotation = model.model_fields["type"].annotation
    if get_origin(annotation) is not Literal or get_args(annotation) != (name,):
        raise RegistryError(f"{model.__name__}: declare `type: Literal[{name!r}] = ...`")
    data_model(model)
    return name


def _index() -> None:
    """Rebuild the derived indexes in place (importers hold references to these very dicts)."""
    by_family = {family: spec.events for family, spec in FAMILIES.items()}
    types: dict[str, type[Event]] = {}
    families: dict[str, Family] = {}
    for family, models in by_family.items():
        for model in models:
            name = check(family, model)
            if name in types:
                raise RegistryError(f"{name!r} is registered twice")
            types[name], families[name] = model, family
    EVENTS_BY_FAMILY.clear()
    EVENTS_BY_FAMILY.update(by_family)
    EVENT_TYPES.clear()
    EVENT_TYPES.update(types)
    FAMILY_OF_TYPE.clear()
    FAMILY_OF_TYPE.update(families)


def register(family: Family, model: type[Event]) -> str:
    """Add an event model to a family at run time and return its type name.

    Real event types are listed in `FAMILIES` above; this is for tests and try-outs
    (the guide's toy type), which must restore the registry afterwards. Modules that
    build something from the registry at import (intake's per-family decoders) do
    not see a type registered later.
    """
    name = check(family, model)
    if name in EVENT_TYPES:
        raise RegistryError(f"{name!r} is registered already")
    spec = FAMILIES[family]
    FAMILIES[family] = replace(spec, events=(*spec.events, model))
    _index()
    return name


_index()
