"""`services.cli.plain`: any text a record holds is shown by rich as that same text, escapes aside, never as markup
and never as terminal control; JSON stays exact JSON; a record of any bytes renders as a `tail` panel; applicants'
personal data is masked by default."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from services.cli.masking import DEEPEST, HIDDEN, masked
from services.cli.plain import UNSAFE, decoded, json_text, markup, text, visible
from services.cli.render import record_panel
from services.privacy import crypto
from tests.cli.screen import rendered
from tests.samples import canonical_dossier, portal_dossier

pytestmark = pytest.mark.unit

DANGEROUS = "\x1b\x9b\x07\x08\r\n\t\x00\x7f\u2028\u202e\u2066\u2069[]/\\\\=:@#link"
TEXT = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(DANGEROUS)))
"""Any string, lone surrogates included, with the characters that make trouble drawn often."""


@settings(max_examples=1000, deadline=None)
@given(TEXT, TEXT)
def test_any_text_is_shown_as_itself_with_controls_as_escapes(value: str, other: str) -> None:
    """`visible` leaves no control, bidi-control or surrogate character, and rich shows `text` and `markup` (alone,
    side by side, and inside the CLI's own markup) as exactly that text, without raising (before: `[/x]` raised
    MarkupError, ESC and U+202E went to the terminal)."""
    shown = visible(value)
    assert not UNSAFE.search(shown)
    assert rendered(text(value)) == shown + "\n"
    assert Text.from_markup(markup(value), emoji=False).plain == shown
    assert Text.from_markup(markup(value) + markup(other), emoji=False).plain == shown + visible(other)
    assert rendered(f"[bold]{markup(value)}[/bold] and {markup(value)}: ({markup(other)})") == \
        f"{shown} and {shown}: ({visible(other)})\n"


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_visible_keeps_newlines_only_when_asked(value: str) -> None:
    """With `newlines`, a newline stays (the CLI's own multi-line text); every other unsafe character is escaped."""
    shown = visible(value, newlines=True)
    assert not UNSAFE.search(shown.replace("\n", ""))
    assert shown.replace("\n", "\\x0a") == visible(value)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | TEXT, lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES, st.sampled_from([None, 2]))
def test_json_stays_exact_json(value: Any, indent: int | None) -> None:
    """`json_text` of what json.dumps writes reads back as the same value, with no unsafe character left but the
    newlines between tokens (before: dlq list --json wrote C1, DEL and bidi controls raw)."""
    written = json_text(json.dumps(value, ensure_ascii=False, indent=indent))
    assert json.loads(written) == value
    assert not UNSAFE.search(written.replace("\n", ""))


HEADERS = st.lists(st.tuples(TEXT, st.binary(max_size=40)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.none(), HEADERS, st.binary(max_size=200) | st.none()
       | JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
       st.booleans())
def test_a_record_of_any_bytes_renders_as_a_panel(key: bytes | None, headers: list[tuple[str, bytes]],
                                                  value: bytes | None, show: bool) -> None:
    """`tail`'s panel of a record with any key, headers and value (JSON or not, UTF-8 or not) renders without
    raising, and no unsafe character of the record's reaches the output."""
    rec = ConsumerRecord("commune.raw.dossier", 0, 7, 0, 0, key, value, None, 0, 0, headers)
    out = rendered(record_panel(rec, show), width=300)
    assert not UNSAFE.search(out.replace("\n", ""))


def test_bytes_that_are_not_utf8_read_as_their_escapes() -> None:
    """A key or header that is not UTF-8 shows its bytes (`\\xff`), not U+FFFD; no value is empty."""
    assert decoded(b"[/k]\xff\xfe") == r"[/k]\xff\xfe" and decoded(None) == ""
    assert visible(decoded(b"\x1b[2J")) == r"\x1b[2J"


def test_markup_of_the_clis_own_values() -> None:
    """Values the CLI puts into its own messages (a requester, a topic, an error) read as written."""
    assert rendered(f"requested by {markup('[/oops] [link=http://evil.example]x[/link]')}") == \
        "requested by [/oops] [link=http://evil.example]x[/link]\n"


def test_a_clear_applicant_is_masked_a_sealed_one_left() -> None:
    """Canonical (structured and binary mode) and portal shapes: names to initials, numbers to their ends, the
    address hidden, wherever the portal's names appear; a sealed applicant group (tokens only) as it is."""
    event = masked(canonical_dossier(applicant={"name": "Trần Văn Minh", "id_number": "008123456789",
                                                "phone": "0987654321", "email": "minh@example.vn",
                                                "address": "Thôn 3", "preferred_locale": "km"}))
    assert event["data"]["applicant"] == {"name": "T. V. M.", "id_number": "00********89", "phone": "09******21",
                                          "email": "m***@example.vn", "address": "***", "preferred_locale": "km"}
    assert masked({"applicant": {"name": "Lan"}}) == {"applicant": {"name": "L."}}
    portal = masked({"data": [portal_dossier(DiaChiChuHoSo="Thôn 3", SoGiayToChuHoSo=8123456789)]})["data"][0]
    assert (portal["ChuHoSo"], portal["SoGiayToChuHoSo"], portal["SoDienThoaiChuHoSo"], portal["DiaChiChuHoSo"]) == (
        "N. T. L.", "81******89", "09******78", "***")
    assert portal["TenTTHC"] == "Đăng ký khai sinh"  # what is not personal stays
    sealed = {"subject": "a-x", "key_id": "k1", "name": crypto.b64(bytes(range(41)))}  # a token of a 13-byte name
    assert masked({"data": {"applicant": sealed}}) == {"data": {"applicant": sealed}}
    assert masked({"ChuHoSo": {"ho": "Nguyễn"}, "SoDienThoaiChuHoSo": None}) == {"ChuHoSo": HIDDEN,
                                                                                 "SoDienThoaiChuHoSo": None}


def test_masking_stops_at_its_depth() -> None:
    """JSON nested past `DEEPEST` (orjson reads 1,024 levels; Python recurses ~1,000) is hidden below it, not a
    RecursionError, and the panel still renders."""
    deep: Any = {"ChuHoSo": "Nguyễn Thị Lan"}
    for _ in range(1000):
        deep = [deep]
    cut = masked(deep)
    for _ in range(DEEPEST):
        cut = cut[0]
    assert cut == HIDDEN
    value = b"[" * 1000 + orjson.dumps({"ChuHoSo": "Nguyễn Thị Lan"}) + b"]" * 1000
    rec = ConsumerRecord("t", 0, 0, 0, 0, None, value, None, 0, 0, [])
    assert "Nguyễn" not in rendered(record_panel(rec), width=300)
