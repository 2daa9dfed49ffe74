"""Slim views (`schemas.views`, `schemas.metrics_views`): one source of truth with the registered models, and a
decode at the edge that refuses, with a reason and a field, what it cannot read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from schemas import views, wire
from schemas.deadletter import Reason
from schemas.dossier import DOSSIER_STATUS_CHANGED
from schemas.envelope import Event
from schemas.events import EVENT_TYPES, data_model, type_name
from schemas.metrics_views import METRICS_VIEWS
from schemas.views import View

pytestmark = pytest.mark.unit
T0 = "2025-11-03T01:10:26Z"
DOSSIER = {"dossier_code": "X-1", "procedure_code": "1.001193", "channel": "online", "status": 9,
           "received_at": T0, "due_at": "2025-11-05T10:00:00Z", "ended_at": "2025-11-04T10:00:00Z",
           "fees": [{"amount_vnd": 8000}], "applicant": {"name": "Nông Văn An"}}
ENVELOPE = {"specversion": "1.0", "id": "e-1", "source": "/communes/05977/test", "time": T0, "subject": "X-1",
            "commune": "05977", "province": "20"}


def record(data: dict[str, Any] | bytes | None = None, *, drop: str = "",
           **attrs: str) -> tuple[list[tuple[str, bytes]], bytes]:
    """A binary-mode dossier record: `data` as the value, the envelope (less `drop`) as ce_ headers."""
    envelope = {**ENVELOPE, "type": DOSSIER_STATUS_CHANGED, **attrs}
    headers = [(f"ce_{k}", v.encode()) for k, v in envelope.items() if k != drop]
    return headers, data if isinstance(data, bytes) else orjson.dumps(data or DOSSIER)


def slim(headers: list[tuple[str, bytes]], value: bytes | None) -> Event:
    return views.decode(METRICS_VIEWS.get, headers, value)


def definition(model: type[BaseModel], name: str) -> tuple[Any, ...]:
    f = model.model_fields[name]
    return f.annotation, f.metadata, f.default, f.default_factory, f.is_required(), f.json_schema_extra


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_view_field_is_defined_as_the_registered_model_defines_it(event_type: str) -> None:
    """Each view reads a field of its type with the registered model's type, constraints, validators, default."""
    view, full = METRICS_VIEWS[event_type], EVENT_TYPES[event_type]
    assert type_name(view) == event_type
    facts, data = data_model(view), data_model(full)
    assert issubclass(facts, View) and facts.model_config.get("extra") == "ignore"
    assert set(facts.model_fields) < set(data.model_fields), "a view reads a subset of the fields"
    for name in facts.model_fields:
        assert definition(facts, name) == definition(data, name), name
    for name in full.model_fields.keys() - {"data", "type"}:
        assert definition(view, name) == definition(full, name), name


def test_every_registered_type_has_a_view_and_no_other_key() -> None:
    """METRICS_VIEWS covers the registry exactly."""
    assert set(METRICS_VIEWS) == set(EVENT_TYPES)


def test_a_valid_record_reads_as_the_full_decode_reads_it() -> None:
    """The view's envelope and fields equal the full decode's; the applicant and other fields are not read."""
    headers, value = record()
    thin, full = slim(headers, value), wire.decode(headers, value)
    assert thin.model_dump(exclude={"data"}) == full.model_dump(exclude={"data"})
    assert thin.data.model_dump() == full.data.model_dump(include=set(type(thin.data).model_fields))
    assert not hasattr(thin.data, "applicant")


@pytest.mark.parametrize(("headers_value", "reason", "field"), [
    ((record()[0], None), Reason.NOT_JSON, "(record)"),
    (([("ce_type", b"\xff")], b"{}"), Reason.NOT_UTF8, "ce_*"),
    (record(b'{"x":' * 300 + b"1" + b"}" * 300), Reason.NOT_JSON, "(record)"),
    (record(type="vn.communebus.unheard-of.v1"), Reason.UNKNOWN_EVENT_TYPE, "ce_type"),
    (record({**DOSSIER, "status": 99}), Reason.UNKNOWN_STATUS, "data.status"),
    (record({**DOSSIER, "ended_at": "2025-11-01T00:00:00Z"}), Reason.IMPOSSIBLE_DATES, "data"),
    (record(commune="02269"), Reason.PROVINCE_MISMATCH, "(record)"),
    (record(drop="time"), Reason.MISSING_FIELD, "time"),
])
def test_refusals_carry_the_reason_and_field_the_full_decode_gives(headers_value: tuple[Any, Any], reason: Reason,
                                                                  field: str) -> None:
    """Tombstone, non-UTF-8, deep JSON, unknown type, bad status, dates, province, missing header: named alike."""
    headers, value = headers_value
    with pytest.raises(wire.InvalidRecord) as thin:
        slim(headers, value)
    with pytest.raises(wire.InvalidRecord) as full:
        wire.decode(headers, value)
    assert (thin.value.reason, thin.value.field) == (reason, field)
    assert (full.value.reason, full.value.field) == (reason, field)


@pytest.mark.parametrize("attribute", ["id", "time", "commune", "province", "source", "subject"])
def test_an_envelope_attribute_never_comes_from_the_value(attribute: str) -> None:
    """Smuggling: an attribute without its header is refused, whether the value closes `data` early or nests it."""
    smuggled = {"id": "x", "time": T0, "commune": "05977", "province": "20", "source": "/x", "subject": "x"}[attribute]
    early = orjson.dumps(DOSSIER)[:-1] + b"}, " + orjson.dumps({attribute: smuggled})[1:-1]
    for value in (early, orjson.dumps({**DOSSIER, attribute: smuggled})):
        headers, _ = record(drop=attribute)
        with pytest.raises(wire.InvalidRecord):
            slim(headers, value)


def test_a_value_closing_data_early_is_refused_even_when_the_header_is_there() -> None:
    """The value is `data` alone: text after its object is not JSON, so nothing can follow it into the envelope."""
    headers, _ = record()
    early = orjson.dumps(DOSSIER)[:-1] + b'}, "id": "forged"'
    with pytest.raises(wire.InvalidRecord) as refused:
        slim(headers, early)
    assert refused.value.reason is Reason.NOT_JSON


def test_the_dossier_view_requires_the_dates_it_reads_for_the_statuses_the_full_model_does() -> None:
    """Per status, the dates the view requires are the full model's required dates among those it reads."""
    from schemas import dossier, metrics_views

    read = set(metrics_views.DossierFacts.model_fields)
    for status, names in dossier.REQUIRED_DATES.items():
        assert metrics_views.REQUIRED_DATES[status] == tuple(n for n in names if n in read), status
