"""Canonical events carry free text in Unicode NFC (`schemas.text`), whichever form the source typed it in.

Vietnamese typed decomposed (NFD: "Unicode tổ hợp" in Vietnamese keyboard tools, macOS) looks the same as the
precomposed form most software writes, but compares unequal: one commune's village or procedure name was another
string than its neighbour's, and cost more SMS characters.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import wire
from schemas.deadletter import Reason
from schemas.events import Family
from schemas.text import name_key, nfc
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Rejected
from tests.samples import HDR, dumps, portal_dossier, storm_scheduled, visit_completed, with_data

pytestmark = pytest.mark.unit


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def is_nfc(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text)


def test_a_portal_dossier_typed_decomposed_comes_out_precomposed() -> None:
    raw = portal_dossier(TenTTHC=nfd("Đăng ký khai sinh"), DonViXuLy=nfd("Bộ phận một cửa xã Thượng Lâm"),
                         ChuHoSo=nfd("Nguyễn Thị Lan"))
    assert raw["TenTTHC"] != "Đăng ký khai sinh"
    outcome = normalise(Family.DOSSIER, dumps(raw), HDR)
    assert isinstance(outcome, Accepted), outcome
    data = outcome.event.data
    assert data.procedure_name == "Đăng ký khai sinh"
    assert data.handling_unit == "Bộ phận một cửa xã Thượng Lâm"
    assert data.applicant is not None and data.applicant.name == "Nguyễn Thị Lan"


@pytest.mark.parametrize("escaped", [False, True], ids=["utf-8", "json-escapes"])
def test_a_visit_and_a_storm_typed_decomposed_come_out_precomposed(escaped: bool) -> None:
    """In UTF-8 and as JSON `\\u` escapes (Python's `json.dumps` default), structured and binary mode."""
    def encode(obj: dict[str, object]) -> bytes:
        return json.dumps(obj, ensure_ascii=escaped).encode()

    visit = with_data(visit_completed(), village=nfd("Thôn Nà Tàng"))
    if escaped:
        assert b"\\u0300" in encode(visit)  # the combining grave accent, escaped
    outcome = normalise(Family.MOBILE_TEAM, encode(visit))
    assert isinstance(outcome, Accepted), outcome
    assert outcome.event.data.village == "Thôn Nà Tàng"

    storm = with_data(storm_scheduled(), title=nfd("Bão số 13 đổ bộ"), target_villages=[nfd("Ấp Prey Chóp")])
    record = wire.encode(normalise(Family.ANNOUNCEMENT, encode(storm)).event)  # type: ignore[union-attr]
    outcome = normalise(Family.ANNOUNCEMENT, record.value, record.headers)
    assert isinstance(outcome, Accepted), outcome
    assert (outcome.event.data.title, outcome.event.data.target_villages) == ("Bão số 13 đổ bộ", ["Ấp Prey Chóp"])


def test_a_length_limit_counts_the_precomposed_text() -> None:
    """A title of 300 characters typed decomposed (more code points) is within its 300; a title whose NFC is longer
    than its input (U+FB2A decomposes to two characters, and NFC keeps them so) is refused when NFC is past 300:
    notify, reading the canonical event, checks the same limit."""
    long_vietnamese = "ễ" * 300
    assert len(nfd(long_vietnamese)) == 900
    ok = normalise(Family.ANNOUNCEMENT, dumps(with_data(storm_scheduled(), title=nfd(long_vietnamese))))
    assert isinstance(ok, Accepted) and ok.event.data.title == long_vietnamese
    assert len(nfc("\ufb2a")) == 2
    refused = normalise(Family.ANNOUNCEMENT, dumps(with_data(storm_scheduled(), title="\ufb2a" * 200)))
    assert isinstance(refused, Rejected)
    assert (refused.rejection.reason, refused.rejection.field) == (Reason.INVALID_FIELD, "data.title")


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(TEXT, st.sampled_from(["NFC", "NFD", "NFKD"]))
def test_any_procedure_name_or_village_is_canonical_in_nfc_or_refused(text: str, form: str) -> None:
    typed = unicodedata.normalize(form, text)
    outcome = normalise(Family.DOSSIER, dumps(portal_dossier(TenTTHC=typed)), HDR)
    if isinstance(outcome, Accepted):
        name = outcome.event.data.procedure_name
        assert name is None or (is_nfc(name) and name == nfc(typed).strip())
    visit = normalise(Family.MOBILE_TEAM, dumps(with_data(visit_completed(), village=typed)))
    if isinstance(visit, Accepted):
        assert is_nfc(visit.event.data.village) and name_key(visit.event.data.village) == name_key(typed)


VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyáàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ "


@given(TEXT, st.text(st.sampled_from(VIETNAMESE), min_size=1, max_size=30))
def test_a_name_key_is_one_for_every_spelling_of_a_name(text: str, vietnamese: str) -> None:
    """Decomposed or precomposed, with runs of spaces or spaces around; a Vietnamese name in any case."""
    spaced = f"  {text} ".replace(" ", "  ")
    assert name_key(text) == name_key(nfd(text)) == name_key(spaced)
    assert name_key(vietnamese.upper()) == name_key(vietnamese) == name_key(nfd(vietnamese.title()))
    assert is_nfc(name_key(text))
