"""The per-event-type tables outside `schemas/` and how to check them against the registry.

Every registered event type (`schemas.events.EVENT_TYPES`) needs an entry in
each table below; `missing_entries` names what is lacking, `stale_entries` the
entries of types that are not registered (a typo, a removed type).
`isolated_registries` lets a test register a toy type and leaves every
registry as it found it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from schema_samples import DATA, sample

from schemas import wire
from schemas.envelope import Event
from schemas.events import EVENT_TYPES, EVENTS_BY_FAMILY, FAMILIES, FAMILY_OF_TYPE
from services.metrics.handlers import HANDLERS
from services.metrics.partition import PartitionState, loads
from services.notify import rules
from services.notify.subscribers import Registry
from tests.notify.events import directory

TABLES: dict[str, Mapping[str, Any]] = {
    "services/notify/rules.py RULES": rules.RULES,
    "services/metrics/handlers.py HANDLERS": HANDLERS,
    "tests/schemas/schema_samples.py DATA": DATA,
}
"""Table name (file and variable, as the guide names them) -> the table, keyed by CloudEvents type."""


def missing_entries() -> dict[str, list[str]]:
    """Per table, the registered event types without an entry (only tables that lack one)."""
    found = {name: sorted(set(EVENT_TYPES) - set(table)) for name, table in TABLES.items()}
    return {name: types for name, types in found.items() if types}


def stale_entries() -> dict[str, list[str]]:
    """Per table, the keys that name no registered event type (only tables that have one)."""
    found = {name: sorted(set(table) - set(EVENT_TYPES)) for name, table in TABLES.items()}
    return {name: types for name, types in found.items() if types}


def exercise(type_name: str) -> tuple[Event, PartitionState]:
    """Run the type's sample through every table: model, wire, notify rules, metrics handler and restore.

    Returns the event and the partition it was applied to; raises on any failure.
    """
    event = EVENT_TYPES[type_name].model_validate(sample(type_name))
    record = wire.encode(event)
    assert wire.decode(record.headers, record.value) == event, "wire round trip changed the event"
    requests = rules.for_event(event, directory(), Registry())
    assert all(r.event_type == type_name for r in requests)
    if rules.RULES[type_name] == rules.NO_NOTIFICATION:
        assert requests == [], "a type without rules notified someone"
    part = PartitionState(0, {})
    change = part.apply(event)
    if HANDLERS[type_name] is None:
        assert change is None, "an IGNORED type changed the state"
        return event, part
    assert change is not None, "the first event of an entity changed nothing"
    key, value = change
    assert loads(key, value) == loads(key, part.store[key])
    restored = PartitionState(0, {})
    restored.restore(key, value)
    assert restored.communes[event.commune].counts == part.communes[event.commune].counts
    return event, part


@contextmanager
def isolated_registries() -> Iterator[None]:
    """Whatever a test registers inside is gone afterwards: the registries are restored in place."""
    tables: list[dict[Any, Any]] = [
        FAMILIES, EVENTS_BY_FAMILY, EVENT_TYPES, FAMILY_OF_TYPE, rules.RULES, HANDLERS, DATA,
    ]
    saved = [dict(t) for t in tables]
    try:
        yield
    finally:
        for table, content in zip(tables, saved, strict=True):
            table.clear()
            table.update(content)
