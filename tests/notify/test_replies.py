"""Properties of what notify takes from a provider's reply (`channels.replies`), for any reply."""

from __future__ import annotations

import json
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.channels import replies

pytestmark = pytest.mark.unit

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20)
"""Any value a provider's JSON reply can decode to (orjson's integers: 64 bits at most)."""
SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@settings(max_examples=500, deadline=None)
@given(st.one_of(JSON, st.text(alphabet=st.characters(codec="ascii"), max_size=200)))
def test_a_kept_provider_id_is_short_and_plain_and_anything_else_is_refused(value: object) -> None:
    """Whatever a provider answers as its id: kept only as at most 128 plain ASCII characters (no space, control,
    `=`, `@`, `/`), else None; `refused` exactly when an id was answered but not kept."""
    kept = replies.provider_id(value)
    if kept.value is not None:
        assert SAFE.fullmatch(kept.value) and not kept.refused
        assert kept.value == (str(value) if type(value) is int else value)
    else:
        assert kept.refused == (value is not None and value != "")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=2048), JSON.map(lambda v: orjson.dumps(v)),
                 st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
                 st.integers(min_value=20, max_value=400).map(lambda n: b'{"message_id":' + b"9" * n + b"}")))
def test_any_reply_body_decodes_to_an_object_or_nothing_and_never_raises(body: bytes) -> None:
    """Any bytes (not JSON, not UTF-8, nested thousands deep, numbers of hundreds of digits) decode to a JSON
    object or to `{}`: never an exception out of the channel."""
    decoded = replies.decode(body)
    assert isinstance(decoded, dict)
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError):
        return
    if isinstance(expected, dict) and decoded:
        assert decoded.keys() == expected.keys()


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_a_zns_error_code_in_a_reason_is_a_short_number_or_unexpected(error: object) -> None:
    """A ZNS `error` becomes at most 10 characters of a reason: its digits (and sign), or `unexpected`."""
    code = replies.error_code(error)
    assert code == "unexpected" or (re.fullmatch(r"-?\d{1,9}", code) and type(error) is int)
