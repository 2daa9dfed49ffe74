"""Views: slim models of canonical events, for a consumer that reads only a few fields (the tolerant reader).

Canonical topics are written by intake alone (ACLs, ADR 0014/0018), which has validated every event in
full. A consumer that reads a handful of fields (metrics) need not pay for validating the rest on every
record: a view declares only those fields and ignores the others (ADR 0023). What a view does read is
validated as strictly as the registered model validates it: each field takes the registered model's own
definition (`same_as`: type, constraints, validators; a test holds them equal), so `schemas/` stays the one
source of truth.

A view of an event is an `Event` subclass: the envelope is validated in full (it is small), only `data` is
slimmed to a `View`. `decode` reads the envelope from the `ce_` headers and `data` from the record value
alone, each validated once, at the edge, so an envelope attribute can never come from the value (the
smuggling that `wire.attribute_from_value` catches for the structured decode cannot happen here). A record
it refuses raises `wire.InvalidRecord` naming the reason and field, as `wire.decode` does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from schemas.deadletter import Reason
from schemas.envelope import Event
from schemas.events import data_model
from schemas.wire import ATTRIBUTES, CE_PREFIX, Headers, InvalidRecord, UnknownEventType, header_text, invalid

E = TypeVar("E", bound=Event)


class View(BaseModel):
    """Base of a slim `data` model: the fields a consumer reads; any other field is ignored, not validated."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, use_enum_values=False)


def same_as(model: type[BaseModel], name: str) -> Any:
    """The registered model's definition of field `name` (constraints, validators, default), for a view.

    Declare the view's field with the annotation pydantic reports for the original (`model_fields[name]
    .annotation`): a validator the original carries in a top-level `Annotated` is part of this definition.
    """
    field: FieldInfo = model.model_fields[name]
    return copy.copy(field)


def header_attributes(headers: Headers) -> dict[str, str]:
    """The envelope attributes (`wire.ATTRIBUTES`) of `ce_` headers; other `ce_` headers are left out, as the
    structured decode leaves them out. Raises `InvalidRecord` (not UTF-8, or a header without a value)."""
    try:
        return {name: header_text(k, v) for k, v in headers if (name := _NAMES.get(k)) is not None}
    except UnicodeDecodeError:
        raise InvalidRecord(Reason.NOT_UTF8, "ce_*", "a ce_* header is not valid UTF-8") from None


_NAMES = {f"{CE_PREFIX}{name}": name for name in ATTRIBUTES}
"""Header name -> attribute: one lookup per header."""


@cache
def _data_of(view: type[Event]) -> type[BaseModel]:
    return data_model(view)


def decode(view_of: Callable[[str], type[E] | None], headers: Headers, value: bytes | None) -> E:
    """The record as the view `view_of(ce_type)`: `data` from the value, the envelope from the headers.

    Raises `InvalidRecord` (`UnknownEventType` for a type with no view); the field of a `data` error is
    named as the structured decode names it (`data.<path>`).
    """
    if value is None:
        raise InvalidRecord(Reason.NOT_JSON, "(record)", "record has no value (tombstone)")
    attrs = header_attributes(headers)
    view = view_of(attrs.get("type", ""))
    if view is None:
        raise UnknownEventType(attrs.get("type", ""))
    try:
        data = _data_of(view).model_validate_json(value)
    except ValidationError as exc:
        raise _in_data(invalid(exc)) from None
    try:
        return view.model_validate({**attrs, "data": data})  # a model instance passes as is (not revalidated)
    except ValidationError as exc:
        raise invalid(exc) from None


def _in_data(error: InvalidRecord) -> InvalidRecord:
    if error.field == "(record)" and error.reason is Reason.NOT_JSON:
        return error
    field = "data" if error.field == "(record)" else f"data.{error.field}"
    return InvalidRecord(error.reason, field[:200], error.message)

