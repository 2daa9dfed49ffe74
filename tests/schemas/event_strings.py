"""Every string an event carries is an identifier or free text (`schemas/limits.py`, ADR 0039), or an exception
named here: found by walking the pydantic models of each registered event type.

An identifier has the pattern `limits.NO_CONTROL_CHARACTERS` (`identifier()`): ids reach log lines, Kafka headers
and e-mail subjects, where a CR/LF or a bidirectional override does harm. Free text is normalised to NFC (`Text`,
`NFC`): one village typed two ways must be one village. A string field with neither slipped through both rules,
as the toy type of docs/adding-an-event-family.md did while the guide wrote `str = Field(...)`.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from schemas.limits import NO_CONTROL_CHARACTERS
from schemas.text import NFC

EXCEPTIONS: dict[str, str] = {
    "Event.commune": "a commune code: its own validator takes 5 digits, from the official list",
    "Event.province": "a province code: its own validator takes 2 digits, from the official list",
    "Event.traceparent": "a W3C traceparent: its own pattern (schemas.trace.PATTERN)",
    "DossierData.procedure_code": "a procedure code: its own pattern, letters, digits, '.', '_' and '-'",
    "SealedApplicant.subject": "a pseudonym: its own pattern (schemas.personal.SUBJECT_PATTERN)",
    "SealedApplicant.key_id": "a key id: its own pattern (schemas.personal.KEY_ID_PATTERN)",
    **{f"SealedApplicant.{f}": "a sealed token: base64url (schemas.personal.TOKEN_PATTERN)"
       for f in ("name", "id_number", "phone", "email", "zalo_user_id", "address")},
    "OpenedApplicant.subject": "a pseudonym: its own pattern (schemas.personal.SUBJECT_PATTERN)",
}
"""`<model>.<field>`: strings that are neither, each with what bounds it instead."""


def _flat(metadata: list[Any]) -> Iterator[Any]:
    for m in metadata:
        yield m
        if isinstance(m, FieldInfo):
            yield from _flat(m.metadata)


def _kind(metadata: list[Any]) -> str | None:
    flat = list(_flat(metadata))
    if any(getattr(m, "pattern", None) == NO_CONTROL_CHARACTERS for m in flat):
        return "identifier"
    if any(m is NFC or (isinstance(m, BeforeValidator) and m.func is NFC.func) for m in flat):
        return "text"
    return None


def _strings(annotation: Any, metadata: list[Any], where: str, seen: set[type]) -> Iterator[tuple[str, str | None]]:
    """(`<model>.<field>`, its kind) of every string inside `annotation`, nested models, lists and unions included."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *more = get_args(annotation)
        yield from _strings(base, [*metadata, *more], where, seen)
    elif annotation is str:
        yield where, _kind(metadata)
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _strings(arg, metadata, where, seen)
    elif origin in (list, tuple, set, frozenset, dict):  # an item's bounds are its own, not the container's
        for arg in get_args(annotation):
            yield from _strings(arg, [], where, seen)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        seen.add(annotation)
        for name, field in annotation.model_fields.items():
            owner = next(c for c in annotation.__mro__ if name in getattr(c, "__annotations__", {}))
            yield from _strings(field.annotation, list(field.metadata), f"{owner.__name__}.{name}", seen)


def unchecked_strings(model: type[BaseModel]) -> list[str]:
    """The string fields of `model` (an event type) that are no identifier, no NFC text and no listed exception."""
    return sorted({where for where, kind in _strings(model, [], model.__name__, set())
                   if kind is None and where not in EXCEPTIONS})
