"""The nesting limit at its edge: 32 levels, as docs/integrators.md promises, pass; 33 are too deep (pure)."""

from __future__ import annotations

import pytest

from schemas.limits import ShapeError, check_shape

pytestmark = pytest.mark.unit


def nested(levels: int) -> object:
    """`levels` containers, each inside the one before, dicts and lists in turn: `[{"a": [...]}]`."""
    value: object = {} if levels % 2 else []
    for level in range(levels - 1, 0, -1):
        value = {"a": value} if level % 2 else [value]
    return value


def test_thirty_two_levels_pass_the_shape_check_and_thirty_three_are_too_deep() -> None:
    """Exactly 32 nested containers pass `check_shape`; 33 raise `ShapeError` as too deep, naming the limit."""
    check_shape(nested(32))
    with pytest.raises(ShapeError) as raised:
        check_shape(nested(33))
    assert raised.value.too_deep and raised.value.limit == "nests deeper than 32 levels"
