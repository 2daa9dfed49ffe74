"""`commune-bus tail` by default shows of a record's key, headers and value only what identifies nobody.

Producers key raw records by a CCCD or a phone, and put a phone or a citizen id in headers of their own
(`x-applicant-phone`, `ce_subject`; ADR 0026): by default a key is shown only when it is a commune code (or
another closed shape of ours), a header value only when it has the closed shape intake keeps in clear on a dead
letter (`CLEAR_HEADERS`, the `dlq.*` context), every other key or header as `<masked, N bytes>`; in a JSON value
every applicant's personal fields are masked (an applicant list, a group naming a `key_id` but holding clear
values), and any run of nine digits or more is masked wherever it is. `--show-personal-data` shows it all.
"""

from __future__ import annotations

import pytest

from services.cli.masking import masked
from services.privacy import crypto

TOKEN = crypto.b64(bytes(range(60)))
"""What a sealed field looks like: base64url of nonce, ciphertext and tag."""
LISTED = {"name": "Phạm Văn Hùng", "phone": "0987654321", "id_number": "038095001234"}
"""An applicant inside an applicant list."""
KEYED = {"subject": "a-" + "A" * 43, "key_id": "x", "name": "Lê Thị Mai", "phone": "0903123456",
         "id_number": "001188009876", "email": "mai.le@example.vn"}
"""A group naming a `key_id` whose personal fields are in clear all the same."""
KEY_CCCD, HEADER_PHONE, SUBJECT_CCCD = "001099012345", "0912345678", "079203004567"
PERSONAL = [KEY_CCCD, HEADER_PHONE, SUBJECT_CCCD, *LISTED.values(), *(KEYED[f] for f in ("name", "phone", "id_number",
                                                                                           "email"))]


@pytest.mark.unit
def test_applicant_lists_and_groups_with_clear_values_are_masked() -> None:
    """An applicant list, and a group naming a `key_id` beside clear values (before: both as they were); a group whose
    personal fields are sealed tokens stays as it is, whatever else it names; a clear field beside sealed ones is
    masked."""
    assert masked({"applicant": [LISTED, [LISTED], "x"]}) == {"applicant": [
        {"name": "P. V. H.", "phone": "09******21", "id_number": "03********34"},
        [{"name": "P. V. H.", "phone": "09******21", "id_number": "03********34"}], "x"]}
    assert masked({"data": {"applicant": KEYED}})["data"]["applicant"] == {
        "subject": KEYED["subject"], "key_id": "x", "name": "L. T. M.", "phone": "09******56",
        "id_number": "00********76", "email": "m***@example.vn"}
    sealed = {"subject": KEYED["subject"], "key_id": "k1", "name": TOKEN, "phone": TOKEN, "preferred_locale": "vi"}
    assert masked({"applicant": sealed}) == {"applicant": sealed}
    assert masked({"applicant": {**sealed, "phone": "0912345678"}}) == {"applicant": {**sealed, "phone": "09******78"}}


@pytest.mark.unit
def test_long_digit_runs_are_masked_wherever_they_are() -> None:
    """Nine digits or more in a row (a CMND, a phone, a CCCD) in any string, member name or number of a value; a
    portal time (`NgayNopHoSo`: yyyyMMddHHmmss) stays."""
    from services.cli.masking import personal_numbers_masked

    assert personal_numbers_masked("goi 0912345678 hoac +84987654321") == "goi 09******78 hoac +84*******21"
    assert masked({"ghi_chu": "CCCD 001099012345", "001099012345": 912345678, "MucPhi": 8000,
                   "NgayNopHoSo": "20251101080000"}) == {
        "ghi_chu": "CCCD 00********45", "00********45": "91*****78", "MucPhi": 8000, "NgayNopHoSo": "20251101080000"}
    assert masked({"NgayNopHoSo": "20259901080000", "x": "20251101080000"}) == {"NgayNopHoSo": "20**********00",
                                                                               "x": "20**********00"}


