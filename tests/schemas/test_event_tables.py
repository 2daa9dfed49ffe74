"""One registry of event types, and the tables every event type needs: complete, consistent, working."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import pytest
from event_tables import TABLES, exercise, isolated_registries, missing_entries, stale_entries
from pydantic import BaseModel

from schemas import wire
from schemas.envelope import Event
from schemas.events import (
    EVENT_TYPES,
    EVENTS_BY_FAMILY,
    FAMILIES,
    FAMILY_OF_TYPE,
    Family,
    RegistryError,
    register,
    type_name,
)
from schemas.topics import CANONICAL, RAW, TOPICS, Kind
from services.metrics.handlers import HANDLERS
from services.metrics.partition import LOADERS
from services.notify.topics import INPUTS

pytestmark = pytest.mark.unit


class Probe(BaseModel):
    probe_id: str


class ProbeEvent(Event):
    type: Literal["vn.communebus.mobile-team.probe.v1"] = "vn.communebus.mobile-team.probe.v1"
    data: Probe


class MisnamedEvent(Event):
    type: Literal["vn.communebus.dossier.probe.v1"] = "vn.communebus.dossier.probe.v1"
    data: Probe


class LooseTypeEvent(Event):
    type: str = "vn.communebus.mobile-team.loose.v1"
    data: Probe


def test_every_event_type_has_a_rule_entry_a_handler_entry_and_a_sample() -> None:
    """No registered event type lacks an entry in notify's RULES, metrics' HANDLERS or the samples."""
    assert missing_entries() == {}


def test_no_table_has_an_entry_for_an_unregistered_type() -> None:
    """A misspelt or removed type's entry is caught (it would otherwise never be used)."""
    assert stale_entries() == {}


def test_completeness_check_names_each_table_an_unfinished_type_is_missing_from() -> None:
    """Registering a type without its entries makes the check fail, naming every table."""
    with isolated_registries():
        name = register(Family.MOBILE_TEAM, ProbeEvent)
        assert missing_entries() == {table: [name] for table in TABLES}
    assert missing_entries() == {}


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_each_type_goes_through_wire_rules_and_metrics(type_name: str) -> None:
    """The type's sample decodes, round-trips the wire, meets its rules and merges into (and restores) state."""
    exercise(type_name)


def test_handler_entries_are_for_their_key_and_use_a_known_state_kind() -> None:
    """Each metrics entry's model is the type it is filed under, and its state kind can be loaded back."""
    for name, entry in HANDLERS.items():
        if entry is not None:
            assert type_name(entry.model) == name
            assert entry.kind.encode() in LOADERS


def test_indexes_agree_with_the_families() -> None:
    """EVENTS_BY_FAMILY, EVENT_TYPES and FAMILY_OF_TYPE are derived from FAMILIES, each type once."""
    assert {f: spec.events for f, spec in FAMILIES.items()} == EVENTS_BY_FAMILY
    assert {type_name(m): m for spec in FAMILIES.values() for m in spec.events} == EVENT_TYPES
    assert {type_name(m): f for f, spec in FAMILIES.items() for m in spec.events} == FAMILY_OF_TYPE
    assert set(FAMILIES) == set(Family)


def test_each_family_has_its_raw_and_canonical_topic_and_notify_reads_it() -> None:
    """Topics are derived per family (commune.raw.<family>, commune.events.<family>) and consumed by notify."""
    for family in FAMILIES:
        assert RAW[family].name == f"commune.raw.{family.value}" and RAW[family].kind is Kind.RAW
        assert CANONICAL[family].name == f"commune.events.{family.value}"
        assert RAW[family] in TOPICS and CANONICAL[family] in TOPICS
        assert CANONICAL[family] in INPUTS, f"services/notify/topics.py INPUTS lacks {CANONICAL[family].name}"


def test_registered_type_is_decoded_and_forgotten_afterwards() -> None:
    """register() makes a type decodable at once; the isolation restores every registry in place."""
    event = ProbeEvent(id="p-1", source="/t", time=datetime(2025, 11, 3, 1, tzinfo=UTC), subject="P-1", commune="02269",
                       province="08", data=Probe(probe_id="P-1"))
    record = wire.encode(event)
    with isolated_registries():
        name = register(Family.MOBILE_TEAM, ProbeEvent)
        assert wire.decode(record.headers, record.value) == event
        assert FAMILY_OF_TYPE[name] is Family.MOBILE_TEAM and ProbeEvent in EVENTS_BY_FAMILY[Family.MOBILE_TEAM]
    assert name not in EVENT_TYPES and ProbeEvent not in FAMILIES[Family.MOBILE_TEAM].events
    with pytest.raises(wire.UnknownEventType):
        wire.decode(record.headers, record.value)


@pytest.mark.parametrize(("family", "model", "why"), [
    (Family.MOBILE_TEAM, MisnamedEvent, "is named vn.communebus.mobile-team."),
    (Family.MOBILE_TEAM, LooseTypeEvent, "declare `type: Literal["),
    (Family.DOSSIER, EVENT_TYPES["vn.communebus.dossier.status-changed.v1"], "registered already"),
])
def test_register_refuses_a_model_that_cannot_join(family: Family, model: type[Event], why: str) -> None:
    """A type named for another family, a `type` field that is not a Literal, or a duplicate is refused."""
    with isolated_registries(), pytest.raises(RegistryError, match=why.replace("[", r"\[")):
        register(family, model)
