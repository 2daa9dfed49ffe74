"""Every string of every registered event type is an identifier or NFC text, or a named exception (`event_strings`)."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from event_strings import EXCEPTIONS, _strings, unchecked_strings
from pydantic import Field

from schemas.envelope import Event, Model
from schemas.events import EVENT_TYPES
from schemas.limits import identifier
from schemas.text import NFC, Text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_string_of_a_registered_type_is_an_identifier_or_text(type_name: str) -> None:
    """No field of the type (envelope, data, nested groups, list items) is a plain `str`: each refuses control and
    bidirectional-override characters (`identifier`), or is normalised to NFC (`Text`), or is a named exception."""
    assert unchecked_strings(EVENT_TYPES[type_name]) == []


def test_every_exception_is_a_string_of_a_registered_type_that_needs_it() -> None:
    """An exception names a field that exists and is neither kind: a stale one would hide the next plain `str`."""
    found = {where: kind for model in EVENT_TYPES.values() for where, kind in _strings(model, [], "", set())}
    assert {name: found.get(name, "absent") for name in EXCEPTIONS} == dict.fromkeys(EXCEPTIONS)


class _Inner(Model):
    note: str | None = None
    ok: Annotated[str, Field(max_length=9), NFC] | None = None


class _Data(Model):
    code: str = Field(max_length=9)
    tags: list[str] = Field(default_factory=list)
    inner: _Inner | None = None
    name: Text = Field(max_length=9)
    ref: str = identifier(max_length=9)
    items: list[Annotated[str, Field(max_length=9), NFC]] = Field(default_factory=list)


class _Toy(Event):
    type: Literal["vn.communebus.mobile-team.walk.v1"] = "vn.communebus.mobile-team.walk.v1"
    data: _Data


def test_the_walk_finds_a_plain_string_wherever_it_is() -> None:
    """A plain `str` is found as a field, a list's item and inside an optional nested model; identifiers and text,
    required or optional, single or listed, pass."""
    assert unchecked_strings(_Toy) == ["_Data.code", "_Data.tags", "_Inner.note"]
