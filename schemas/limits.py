"""Safety limits on what a record may contain, and the one cheap check of a raw record's shape.

Every consumer of a record (intake's validation, notify's date arithmetic and e-mail
headers, metrics' epoch seconds, orjson's serialiser) has limits of its own; these are
set inside all of them, so a record within them cannot crash any service:

- times lie in 1975-01-01T00:00:00Z .. 2100-12-31T23:59:59.999999Z (adding days or time
  zones to them cannot overflow; Vietnam has had one offset, +07:00, since June 1975);
- a JSON array holds at most `MAX_ITEMS` items and JSON nests at most `MAX_DEPTH` levels
  (orjson refuses to serialise past 254, pydantic's parser past 200);
- identifiers (ids, codes) hold no control or bidirectional-override characters: they
  reach log lines, Kafka headers and e-mail subjects;
- list items that are free strings are at most `MAX_ITEM_LENGTH` characters, and an amount
  at most `MAX_AMOUNT_VND`.

In the JSON Schemas each limit added to a published contract carries `x-safety-limit`:
`schemas.compat` accepts such an addition only where the schema had no bound before, and
only when it is no tighter than the floors below (see `schemas.compat`, "Safety limits").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, get_args

from annotated_types import MaxLen
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from schemas.text import NFC

EARLIEST: Final = datetime(1975, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
EARLIEST_TEXT: Final = "1975-01-01T00:00:00Z"
LATEST_TEXT: Final = "2100-12-31T23:59:59.999999Z"
MAX_ITEMS: Final = 1000
MAX_DEPTH: Final = 32
MAX_ITEM_LENGTH: Final = 500
MAX_AMOUNT_VND: Final = 10**15
"""A fee: a thousand trillion đồng is beyond any fee, and keeps sums of fees printable."""
MAX_COUNT: Final = MAX_AMOUNT_VND
"""A count added to a published schema without one (a safety limit no lower than the floor of `maximum`): beyond
any real count, and within the 64-bit integers every JSON reader here takes (orjson reads a larger one as a float,
past 1e308 not at all: a 400-digit count was accepted by intake and refused by notify, 2026-12-02)."""
CONTROL: Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
"""C0 and C1 controls, line and paragraph separators, bidirectional embeddings, overrides and isolates."""
NO_CONTROL_CHARACTERS: Final = f"^[^{CONTROL}]*$"
"""The pattern of an identifier: the same escapes mean the same in Python, Rust (pydantic) and ECMA-262 regexes."""

SAFETY_LIMIT: Final = "x-safety-limit"
"""Marks a bound added to a published schema as a safety limit (`schemas.compat` checks it against the floors)."""
FLOORS: Final[dict[str, Any]] = {
    "maxItems": 100, "maxLength": 100, "maximum": MAX_AMOUNT_VND,
    "formatMinimum": EARLIEST_TEXT, "formatMaximum": LATEST_TEXT, "pattern": NO_CONTROL_CHARACTERS,
    "format": "uri-reference",
}
"""The tightest safety limit of each kind `schemas.compat` lets into a published schema: upper bounds at least
these, the lowest earliest time this, as a pattern only the identifier one, and as a format only a URI-reference
(CloudEvents' `source`)."""
DATE_RANGE: Final = {"formatMinimum": EARLIEST_TEXT, "formatMaximum": LATEST_TEXT, SAFETY_LIMIT: True}
"""JSON Schema annotation of a time (`formatMinimum`/`formatMaximum`: the JSON Schema format-assertion keywords)."""


def items(description: str | None = None) -> Any:
    """`Field` of a list: at most `MAX_ITEMS` items (an empty list by default)."""
    return Field(default_factory=list, max_length=MAX_ITEMS, description=description, fail_fast=True,
                 json_schema_extra={SAFETY_LIMIT: True})


def identifier(**kwargs: Any) -> Any:
    """`Field` of an identifier: no control characters (kwargs: the field's other constraints)."""
    return Field(pattern=NO_CONTROL_CHARACTERS, json_schema_extra={SAFETY_LIMIT: True}, **kwargs)


class ShapeError(ValueError):
    """A parsed JSON value nests too deep or holds too long an array. `field` is its path (keys cut short)."""

    def __init__(self, too_deep: bool, field: str) -> None:
        self.too_deep, self.field = too_deep, field[:200]
        self.limit = f"nests deeper than {MAX_DEPTH} levels" if too_deep else f"holds more than {MAX_ITEMS} items"
        super().__init__(f"{self.field}: {self.limit}")


def may_exceed(raw: bytes) -> bool:
    """False when the raw JSON text certainly keeps within the depth and array limits (two byte counts, C speed).

    Nesting needs a bracket per level and an array of n items n - 1 commas; brackets and commas inside
    strings only make this answer True more often.
    """
    return raw.count(b",") >= MAX_ITEMS or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


_NAMED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_NUMBER_RUN = re.compile(r"[0-9]{5}")
"""Five digits in a row: a key that may hold a phone or CCCD number (`x0912345678`) is not repeated either."""
UNNAMED_KEY: Final = "<member>"
"""How an error names a member it does not repeat: one that is not a plain identifier (an unknown member's name is
the sender's text, which may be a name, a CCCD number, a CR/LF or a megabyte long)."""


def shown_key(key: str) -> str:
    """A member's name as an error location may repeat it: a plain identifier, or `UNNAMED_KEY`."""
    return key if _NAMED_KEY.fullmatch(key) and not _NUMBER_RUN.search(key) else UNNAMED_KEY


def check_shape(value: Any) -> None:
    """Raise `ShapeError` for the first container past the depth or array limit; O(size), no recursion."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise ShapeError(True, path or "(record)")
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1, _child_path(path, depth, f".{shown_key(key)}")))
        else:
            if len(node) > MAX_ITEMS:
                raise ShapeError(False, path or "(record)")
            stack.extend((child, depth + 1, _child_path(path, depth, f"[{i}]")) for i, child in enumerate(node)
                         if isinstance(child, dict | list))


def _child_path(path: str, depth: int, step: str) -> str:
    """Paths name the first four levels; deeper containers are reported by their ancestor's path."""
    if depth > 4:
        return path
    return f"{path}{step}" if path else step.lstrip(".")


ItemText = Annotated[str, Field(max_length=MAX_ITEM_LENGTH, json_schema_extra={SAFETY_LIMIT: True}), NFC]
"""A free-text list item (a document, a village, an activity), in NFC (`schemas.text`)."""
ItemId = Annotated[str, Field(max_length=MAX_ITEM_LENGTH, pattern=NO_CONTROL_CHARACTERS,
                              json_schema_extra={SAFETY_LIMIT: True})]
"""An identifier as a list item (a loudspeaker cluster id)."""


def max_length(model: type[BaseModel], name: str) -> int:
    """The registered model's `max_length` of field `name` (read, not copied): on the field, or on the string of an
    optional text field (`Annotated[str, Field(max_length=n), NFC] | None`, `schemas.text`)."""
    field = model.model_fields[name]
    inner = [m for arg in get_args(field.annotation) for m in getattr(arg, "__metadata__", ())]
    for constraint in [*field.metadata, *(c for m in inner for c in (m.metadata if isinstance(m, FieldInfo) else [m]))]:
        if isinstance(constraint, MaxLen):
            return constraint.max_length
    raise LookupError(f"{model.__name__}.{name} has no max_length")
