"""W3C traceparent validity (`schemas.trace.is_valid`): the whole value, nothing after it."""

from __future__ import annotations

import pytest

from schemas import trace

pytestmark = pytest.mark.unit
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("value", "valid"), [
    (VALID, True),
    (VALID + "\n", False),  # `re.match` with `$` took it: a line break into ce_traceparent
    (VALID + "\r\n", False),
    (VALID.upper(), False),
    ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", False),
    (" " + VALID, False),
])
def test_a_traceparent_is_valid_only_as_a_whole(value: str, valid: bool) -> None:
    assert trace.is_valid(value) is valid
