"""Unit tests of intake's functional core: shapes accepted, normalisation, and every rejection reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from schemas import wire
from schemas.codes import Channel, DossierStatus, Priority, Timeliness
from schemas.deadletter import Reason
from schemas.dossier import DATE_ORDER
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import MAX_PROBLEMS, Accepted, Rejected
from tests.samples import (
    HDR,
    MALFORMED,
    canonical_dossier,
    dumps,
    portal_dossier,
    storm_scheduled,
    visit_completed,
    with_data,
    without,
)

pytestmark = pytest.mark.unit


def accepted(family: Family, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Accepted:
    outcome = normalise(family, value, headers or [])
    assert isinstance(outcome, Accepted), outcome
    return outcome


def rejected(family: Family, value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Rejected:
    outcome = normalise(family, value, headers or [])
    assert isinstance(outcome, Rejected), outcome
    return outcome


def test_portal_shape_is_mapped_and_times_become_utc() -> None:
    """The portal's Vietnamese field names map to the canonical dossier; Vietnam time becomes UTC."""
    event = accepted(Family.DOSSIER, dumps(portal_dossier()), HDR).event
    assert event.commune == "02269" and event.province == "08"
    d = event.data
    assert d.dossier_code == "TL-251101-0001" and d.status is DossierStatus.IN_PROGRESS
    assert d.channel is Channel.ONLINE and d.paid_online and d.digitised
    assert d.submitted_at == datetime(2025, 11, 1, 1, 0, tzinfo=UTC)  # 08:00 ICT
    assert d.received_at == datetime(2025, 11, 1, 2, 0, tzinfo=UTC)  # ISO without offset, also ICT
    assert d.fees[0].amount_vnd == 8000 and d.documents[0].digitised
    assert d.applicant is not None and d.applicant.phone == "0912345678"


def test_portal_payload_resent_gets_the_same_id() -> None:
    """Identical portal payloads get one deterministic id; a changed payload gets another."""
    a = accepted(Family.DOSSIER, dumps(portal_dossier()), HDR).event.id
    b = accepted(Family.DOSSIER, dumps(portal_dossier()), HDR).event.id
    c = accepted(Family.DOSSIER, dumps(portal_dossier(status=5)), HDR).event.id
    assert a == b != c


def test_portal_event_id_is_the_uuid5_of_commune_and_sorted_payload() -> None:
    """The id formula is part of the contract: a payload re-sent after an upgrade must keep its id."""
    payload = portal_dossier()
    name = "02269|" + orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()
    expected = str(uuid.uuid5(uuid.UUID("5b0f6a52-3c1e-4d7e-9f51-2f2f8a0d4c11"), name))
    assert accepted(Family.DOSSIER, dumps(payload), HDR).event.id == expected


@pytest.mark.parametrize(("progress", "expected"), [
    ([], datetime(2025, 11, 1, 2, 0, tzinfo=UTC)),  # NgayTiepNhan, the latest date of the payload
    ([{"ThoiDiemXuLy": "20251103110000"}, {"ThoiDiemXuLy": "20251102100000"}], datetime(2025, 11, 3, 4, 0, tzinfo=UTC)),
    ([{"ThoiDiemXuLy": "20251102100000"}, {"ThoiDiemXuLy": "20251399000000"}], datetime(2025, 11, 2, 3, 0, tzinfo=UTC)),
    ([{"ThoiDiemXuLy": "20251102100000"}, {"ThoiDiemXuLy": "2025-11-04T07:00:00+07:00"}],
     datetime(2025, 11, 4, 0, 0, tzinfo=UTC)),
    ([{"ThoiDiemXuLy": "garbage"}, {"NguoiXuLy": "cb.01"}, "not a step"], datetime(2025, 11, 1, 2, 0, tzinfo=UTC)),
    # a mistyped year beyond 2100 (or before 1975): the step loses its time; it dead-lettered the whole update
    ([{"ThoiDiemXuLy": "20251102100000"}, {"ThoiDiemXuLy": "21011103081026"}], datetime(2025, 11, 2, 3, 0, tzinfo=UTC)),
    ([{"ThoiDiemXuLy": "20251102100000"}, {"ThoiDiemXuLy": "2925-11-03T08:10:26"}],
     datetime(2025, 11, 2, 3, 0, tzinfo=UTC)),
    ([{"ThoiDiemXuLy": "19501102100000"}, {"ThoiDiemXuLy": "20251102100000"}], datetime(2025, 11, 2, 3, 0, tzinfo=UTC)),
    # a malformed step before valid ones: the steps after it still count (ending the scan there went unseen)
    ([{"ThoiDiemXuLy": "2025-11-02"}, {"ThoiDiemXuLy": "garbage"}, {"ThoiDiemXuLy": "20251103100000"}],
     datetime(2025, 11, 3, 3, 0, tzinfo=UTC)),
])
def test_portal_event_time_is_the_latest_date_or_progress_step(progress: list, expected: datetime) -> None:
    """A malformed or out-of-range progress step only loses its own time, also when it would have been the latest."""
    event = accepted(Family.DOSSIER, dumps(portal_dossier(QuaTrinhXuLy=progress)), HDR).event
    assert event.time == expected


def test_completed_dossier_gets_timeliness() -> None:
    """Processing that ends before the due day is early; on the due day on time; after, late."""
    early = accepted(Family.DOSSIER, dumps(portal_dossier(status=9)), HDR).event.data
    assert early.timeliness is Timeliness.EARLY
    on_time = portal_dossier(status=9, NgayKetThucXuLy="20251105230000")  # same Vietnam day as due
    assert accepted(Family.DOSSIER, dumps(on_time), HDR).event.data.timeliness is Timeliness.ON_TIME
    late = portal_dossier(status=10, NgayKetThucXuLy="20251106000100", NgayTra="20251106080000")
    assert accepted(Family.DOSSIER, dumps(late), HDR).event.data.timeliness is Timeliness.LATE


def test_canonical_binary_and_structured_agree() -> None:
    """A structured CloudEvent and its binary-mode encoding normalise to the same event."""
    structured = accepted(Family.DOSSIER, dumps(canonical_dossier())).event
    rec = wire.encode(structured)
    assert accepted(Family.DOSSIER, rec.value, rec.headers).event == structured
    assert structured.key == "02269"


def test_commune_codes_are_zero_padded() -> None:
    """Integer commune and province codes are accepted and rendered 5 and 2 digits wide."""
    event = accepted(Family.DOSSIER, dumps({**canonical_dossier(), "commune": 2269, "province": 8})).event
    assert (event.commune, event.province) == ("02269", "08")


def test_emergency_category_forces_emergency_priority() -> None:
    """A storm announcement is an emergency whatever priority the sender gave it."""
    event = accepted(Family.ANNOUNCEMENT, dumps(with_data(storm_scheduled(), priority="routine"))).event
    assert event.data.priority is Priority.EMERGENCY


def test_mobile_team_visit_is_accepted() -> None:
    """A completed visit keeps its reach figures."""
    event = accepted(Family.MOBILE_TEAM, dumps(visit_completed())).event
    assert event.data.households_visited == 41 and event.data.accounts_activated == 9


@pytest.mark.parametrize(("family", "value", "headers", "reason", "field"), MALFORMED)
def test_rejections_name_reason_and_field(
    family: Family, value: bytes | None, headers: list[tuple[str, bytes]], reason: Reason, field: str
) -> None:
    """Each kind of bad input is rejected with a machine reason and the offending field named."""
    r = rejected(family, value, headers).rejection
    assert (r.reason, r.field) == (reason, field)
    assert r.message.startswith(field) or r.field == "(record)"


def test_error_messages_never_echo_personal_data() -> None:
    """A rejection of a payload full of personal data names fields, never their values."""
    bad = portal_dossier(SoDienThoaiChuHoSo="x" * 40, ChuHoSo="Nguyễn Thị Lan" * 30, SoGiayToChuHoSo=12345)
    out = rejected(Family.DOSSIER, dumps(bad), HDR)
    text = " ".join(p.message for p in out.problems)
    assert {p.field for p in out.problems} >= {"SoDienThoaiChuHoSo", "ChuHoSo"}
    assert "Nguyễn" not in text and "xxxx" not in text and "12345" not in text


def test_all_problems_are_listed() -> None:
    """Every bad field of a record is reported, not only the first."""
    bad = with_data(canonical_dossier(), paid_online="maybe", digitised="perhaps")
    fields = {p.field for p in rejected(Family.DOSSIER, dumps(bad)).problems}
    assert fields == {"data.paid_online", "data.digitised"}


def test_an_unknown_members_name_is_not_repeated_unless_it_is_a_plain_identifier() -> None:
    """An unknown member is named by its path; a name that is not a plain identifier (a person's name, a CCCD
    number, a megabyte of text) is `<member>`, never echoed, in the field nor in the message."""
    odd = {"Nguyễn Văn A 012345678901": 1, "012345678901": 2, "x" * 100_000: 3, "x0912345678": 5, "extra_note": 4}
    bad = canonical_dossier()
    bad["data"] = {**bad["data"], **odd}
    out = rejected(Family.DOSSIER, dumps(bad))
    assert [p.reason for p in out.problems] == [Reason.UNKNOWN_FIELD] * 5
    assert sorted(p.field for p in out.problems) == ["data.<member>"] * 4 + ["data.extra_note"]
    text = " ".join(f"{p.field} {p.message}" for p in out.problems)
    assert "Nguyễn" not in text and "012345678901" not in text and "xxxx" not in text and "0912345678" not in text


@pytest.mark.parametrize("portal", [False, True])
@pytest.mark.parametrize("too_deep", [False, True])
@pytest.mark.parametrize("name", ["Nguyễn Văn An 0912345678\r\nX-Evil: 1", "plain_name"])
def test_a_member_past_the_shape_limits_is_not_named_by_its_text(portal: bool, too_deep: bool, name: str) -> None:
    """A member holding too long an array, or nesting too deep, whose name is a person's name and phone with a CR/LF:
    the rejection names it `<member>` (the audit found the name, CR/LF included, in the field, the message, the
    gateway's 422 and the intake log); a plain name is still given."""
    nested: object = 0
    for _ in range(40):
        nested = [nested]
    bad = portal_dossier() if portal else canonical_dossier()
    if portal:
        bad = {**bad, name: nested if too_deep else [0] * 1001}
    else:
        bad["data"] = {**bad["data"], name: nested if too_deep else [0] * 1001}
    out = rejected(Family.DOSSIER, dumps(bad), HDR)
    assert out.rejection.reason is (Reason.TOO_DEEP if too_deep else Reason.TOO_LARGE)
    text = " ".join(f"{p.field} {p.message}" for p in out.problems)
    if name == "plain_name":
        assert "plain_name" in text
    else:
        assert "<member>" in text and "Nguy" not in text and "0912345678" not in text and "\r" not in text


def test_an_unknown_commune_header_is_not_repeated() -> None:
    """A portal record's `commune-code` header that names no commune is refused without its text (any bytes, any
    length: a name and a phone here)."""
    out = rejected(Family.DOSSIER, dumps(portal_dossier()), [("commune-code", "Nguyễn 0912345678\r\nX: y".encode())])
    assert out.rejection.reason is Reason.UNKNOWN_COMMUNE
    assert "Nguy" not in out.rejection.message and "0912345678" not in out.rejection.message


def test_a_record_lists_its_first_problems_and_counts_the_rest() -> None:
    """A hundred unknown members: `MAX_PROBLEMS` listed, then one entry counting the rest."""
    bad = canonical_dossier()
    bad["data"] = {**bad["data"], **{f"extra_{i}": i for i in range(100)}}
    problems = rejected(Family.DOSSIER, dumps(bad)).problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].field == "(record)" and problems[-1].message.startswith("80 more problems in this record")


def test_a_list_reports_its_first_bad_item_only() -> None:
    """A list stops at its first bad item (fail fast): a thousand bad items are one problem, not a thousand."""
    wrong = [1] * 1000
    bad = with_data(canonical_dossier(), documents=wrong, fees=[{"amount_vnd": 8000}, "x", "y"])
    assert sorted(p.field for p in rejected(Family.DOSSIER, dumps(bad)).problems) == ["data.documents[0]",
                                                                                   "data.fees[1]"]


# --- safety limits (issue 11): each poison record is a reasoned rejection, never an exception -----------------

DEEP = b'{"x":' * 300 + b"1" + b"}" * 300


def with_raw(obj: dict[str, object], name: str, raw: bytes) -> bytes:
    """`obj` as JSON with one more member whose value is the raw JSON text `raw`."""
    return dumps(obj)[:-1] + b',"' + name.encode() + b'":' + raw + b"}"


@pytest.mark.parametrize("field", ["NgayNopHoSo", "NgayTiepNhan", "NgayHenTra"])
@pytest.mark.parametrize("value", ["00010101000000", "99991231235959", "0001-01-01T00:00:00",
                                   "9999-12-31T23:59:59-14:00", "19741231235959", "21011231000000"])
def test_portal_dates_outside_1975_to_2100_are_value_out_of_range(field: str, value: str) -> None:
    """Year 1 (it raised OverflowError) and year 9999 portal dates are rejected as value_out_of_range, by field."""
    r = rejected(Family.DOSSIER, dumps(portal_dossier(**{field: value})), HDR).rejection
    assert (r.reason, r.field) == (Reason.VALUE_OUT_OF_RANGE, field)
    assert value not in r.message


@pytest.mark.parametrize(("field", "value"), [("NgayHenTra", "2025110717"), ("NgayNopHoSo", "202511030810"),
                                              ("NgayHenTra", "1762506000"), ("NgayTiepNhan", 1762157426)])
def test_portal_dates_cut_short_or_sent_as_numbers_are_invalid_not_epoch_times(field: str, value: object) -> None:
    """A portal date that is neither yyyyMMddHHmmss nor ISO 8601 text is invalid_field (pydantic read it as Unix
    seconds: "2025110717" was accepted as 2034-03-04), and the message does not repeat it."""
    r = rejected(Family.DOSSIER, dumps(portal_dossier(**{field: value})), HDR).rejection
    assert (r.reason, r.field) == (Reason.INVALID_FIELD, field)
    assert str(value) not in r.message


def test_canonical_times_outside_the_range_are_rejected_and_the_bounds_are_accepted() -> None:
    """The event time and data times are bounded too; 1975-01-01Z and 2100-12-31T23:59:59Z themselves pass."""
    r = rejected(Family.DOSSIER, dumps({**canonical_dossier(), "time": "0001-01-01T00:00:00"})).rejection
    assert (r.reason, r.field) == (Reason.VALUE_OUT_OF_RANGE, "time")
    far = with_data(canonical_dossier(), due_at="9999-12-31T23:59:59-14:00")
    assert rejected(Family.DOSSIER, dumps(far)).rejection.field == "data.due_at"
    edge = with_data(canonical_dossier(), submitted_at="1975-01-01T00:00:00Z", received_at="1975-01-01T00:00:00Z",
                     due_at="2100-12-31T23:59:59Z")
    assert accepted(Family.DOSSIER, dumps({**edge, "time": "2100-12-31T23:59:59Z"}))


def test_a_portal_field_nested_300_deep_is_too_deep_not_a_recursion_error() -> None:
    """An unmapped portal field nested 300 levels (it raised TypeError re-serialising the payload) is too_deep."""
    r = rejected(Family.DOSSIER, with_raw(portal_dossier(), "Extra", DEEP), HDR).rejection
    assert r.reason is Reason.TOO_DEEP and r.field.startswith("Extra")


@pytest.mark.parametrize("family", list(Family))
def test_deep_nesting_is_too_deep_in_every_shape(family: Family) -> None:
    """Structured, binary and beyond-orjson (2,000 levels) nesting is too_deep in every family."""
    for value, headers in [(with_raw(canonical_dossier(), "extra", DEEP), []),
                           (b'{"a":' * 2000 + b"1" + b"}" * 2000, []),
                           (with_raw({"dossier_code": "x"}, "x", DEEP), [("ce_specversion", b"1.0")])]:
        r = rejected(family, value, headers).rejection
        assert r.reason is Reason.TOO_DEEP, (value[:20], r)


def test_a_record_nesting_32_levels_is_accepted_and_33_is_too_deep() -> None:
    """The portal record (level 1) with an unmapped member 31 levels deep is accepted; 32 deep is too_deep, there."""
    def with_levels(levels: int) -> bytes:
        return with_raw(portal_dossier(), "Extra", b"[" * levels + b"]" * levels)

    assert isinstance(normalise(Family.DOSSIER, with_levels(31), HDR), Accepted)
    r = rejected(Family.DOSSIER, with_levels(32), HDR).rejection
    assert (r.reason, r.field) == (Reason.TOO_DEEP, "Extra[0][0][0]")


def test_a_record_of_exactly_the_byte_limit_is_accepted_and_one_byte_over_is_too_large() -> None:
    """`max_bytes` is the largest record taken: a record of N bytes passes a limit of N, and a limit of N - 1 refuses
    it as payload_too_large."""
    value = dumps(canonical_dossier())
    assert isinstance(normalise(Family.DOSSIER, value, max_bytes=len(value)), Accepted)
    refused = normalise(Family.DOSSIER, value, max_bytes=len(value) - 1)
    assert isinstance(refused, Rejected)
    assert (refused.rejection.reason, refused.rejection.field) == (Reason.PAYLOAD_TOO_LARGE, "(record)")


def test_a_million_item_list_is_refused_as_too_large_before_validation() -> None:
    """A 1,000,000-item list (unmapped or mapped) is too_large, whatever the record size limit."""
    huge = b"[" + b"0," * 999_999 + b"0]"
    outcome = normalise(Family.DOSSIER, with_raw(portal_dossier(), "Extra", huge), HDR, max_bytes=10**8)
    assert isinstance(outcome, Rejected)
    assert (outcome.rejection.reason, outcome.rejection.field) == (Reason.TOO_LARGE, "Extra")
    docs = rejected(Family.DOSSIER, dumps(portal_dossier(TaiLieuNop=[{"TenTaiLieu": "a"}] * 1001)), HDR).rejection
    assert (docs.reason, docs.field) == (Reason.TOO_LARGE, "TaiLieuNop")
    villages = with_data(storm_scheduled(), target_villages=["v"] * 1001)
    assert rejected(Family.ANNOUNCEMENT, dumps(villages)).rejection.reason is Reason.TOO_LARGE


@pytest.mark.parametrize("code", ["TL-1\r\nBcc: x@y.z", "TL-1\nX", "TL\x00-1", "TL-\u202e1", "TL-\u20281", "TL\x85X"])
def test_a_dossier_code_with_control_characters_is_invalid(code: str) -> None:
    """CR/LF, NUL, NEL, line separators and bidi overrides in a dossier code are invalid_field (it reaches e-mail)."""
    r = rejected(Family.DOSSIER, dumps(portal_dossier(code=code)), HDR).rejection
    assert (r.reason, r.field) == (Reason.INVALID_FIELD, "MaHoSo") and code not in r.message
    c = rejected(Family.DOSSIER, dumps(with_data(canonical_dossier(), dossier_code=code))).rejection
    assert c.field == "data.dossier_code"


def test_an_applicant_email_with_a_line_break_is_invalid_and_not_echoed() -> None:
    """An e-mail address with CR/LF (header injection) is rejected by field; the address is personal data."""
    r = rejected(Family.DOSSIER, dumps(portal_dossier(EmailChuHoSo="a@b.vn\r\nBcc: c@d.vn")), HDR).rejection
    assert r.field == "EmailChuHoSo" and "b.vn" not in r.message


@pytest.mark.parametrize(("portal_field", "field", "value"), [
    ("SoGiayToChuHoSo", "id_number", "0010\u202e99012345"), ("SoGiayToChuHoSo", "id_number", "038095\n001234"),
    ("SoGiayToChuHoSo", "id_number", "001099\x00012345"), ("ChuHoSo", "name", "Trần Văn\u202e Minh"),
    ("ChuHoSo", "name", "Trần Văn\r\nMinh"), ("ChuHoSo", "name", "Trần\u2066 Minh")])
def test_an_applicant_id_number_or_name_with_control_characters_is_invalid_and_not_echoed(
        portal_field: str, field: str, value: str) -> None:
    """The CCCD and the name are one line each: a control, line-separator or bidi character is invalid_field, on the
    portal's form and the canonical one (the walkthrough of 2026-12-05 saw both accepted, as integrators.md says they
    are not); the value, personal data, is not in the message."""
    r = rejected(Family.DOSSIER, dumps(portal_dossier(**{portal_field: value})), HDR).rejection
    assert (r.reason, r.field) == (Reason.INVALID_FIELD, portal_field) and value not in r.message
    applicant = {"name": "Trần Văn Minh", "phone": "0987654321", field: value}
    c = rejected(Family.DOSSIER, dumps(with_data(canonical_dossier(), applicant=applicant))).rejection
    assert (c.reason, c.field) == (Reason.INVALID_FIELD, f"data.applicant.{field}") and value not in c.message


@pytest.mark.parametrize("extra", [{"KenhThucHien": "9" * 5000}, {"TrangThaiHoSo": "4" * 5000},
                                   {"TrangThaiHoSo": "²"}, {"KenhThucHien": "١"},
                                   {"DanhSachLePhi": [{"MucPhi": 10**18}]}])
def test_huge_and_unicode_numbers_are_rejected_not_raised(extra: dict[str, object]) -> None:
    """5,000-digit strings (int() refuses them), Unicode digits and huge amounts are field rejections."""
    r = rejected(Family.DOSSIER, dumps(portal_dossier(**extra)), HDR).rejection
    assert r.reason is not Reason.INTERNAL_ERROR and r.field


@pytest.mark.parametrize("number", [b"1" * 5000, b"1e400", b"-1" + b"0" * 30, b"NaN", b"1.5"])
def test_huge_numbers_in_json_are_rejected_not_raised(number: bytes) -> None:
    """A 5,000-digit, infinite or non-JSON number in the payload is a rejection with a reason, never an exception."""
    r = rejected(Family.DOSSIER, with_raw(without(portal_dossier(), "TrangThaiHoSo"), "TrangThaiHoSo", number),
                 HDR).rejection
    assert r.reason is not Reason.INTERNAL_ERROR


def test_an_unexpected_exception_is_an_internal_error_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug met by one record (here a mapping that raises) rejects it as internal_error: type and file:line."""
    from services.intake import portal

    def broken(obj: dict[str, object]) -> dict[str, object]:
        raise KeyError("Nguyễn Thị Lan")

    monkeypatch.setattr(portal, "to_canonical_data", broken)
    r = rejected(Family.DOSSIER, dumps(portal_dossier()), HDR).rejection
    assert r.reason is Reason.INTERNAL_ERROR and r.field == "(record)"
    assert r.message.startswith("internal error: KeyError at tests/") or "test_normalise.py:" in r.message
    assert "Nguyễn" not in r.message


def test_due_date_moves_are_read_where_the_portal_sends_them() -> None:
    """A request for more documents (status 5) carries its move of the due date in `DanhSachHoSoBoSung[]`, as the
    portal's sync sends it (DOMAIN.md), besides the top-level pair: each is a `due_date_changes` entry, in order, a
    move given in both places once. Before: only the top-level pair was read; a move sent in the list was dropped,
    and the dossier counted overdue against its old due date."""
    record = portal_dossier("TL-251101-0005", status=5, NgayHenTraTruoc="20251105170000",
                            NgayHenTraMoi="20251110170000", DanhSachHoSoBoSung=[
                                {"NoiDungBoSung": "Bản sao giấy khai sinh", "NgayHenTraTruoc": "20251105170000",
                                 "NgayHenTraMoi": "20251110170000"},
                                {"NoiDungBoSung": "Ảnh chân dung", "NgayHenTraTruoc": "20251110170000",
                                 "NgayHenTraMoi": "2025-11-14T17:00:00"},
                                "not an object", {"NoiDungBoSung": "no move"}])
    event = accepted(Family.DOSSIER, orjson.dumps(record), [("commune-code", b"02269")]).event
    moves = [(c.previous_due_at.isoformat(), c.new_due_at.isoformat()) for c in event.data.due_date_changes]
    assert moves == [("2025-11-05T10:00:00+00:00", "2025-11-10T10:00:00+00:00"),
                     ("2025-11-10T10:00:00+00:00", "2025-11-14T10:00:00+00:00")]
    only_listed = {k: v for k, v in record.items() if k not in ("NgayHenTraTruoc", "NgayHenTraMoi")}
    event = accepted(Family.DOSSIER, orjson.dumps(only_listed), [("commune-code", b"02269")]).event
    assert len(event.data.due_date_changes) == 2
    stray_first = {**only_listed, "DanhSachHoSoBoSung": list(reversed(only_listed["DanhSachHoSoBoSung"]))}
    event = accepted(Family.DOSSIER, orjson.dumps(stray_first), [("commune-code", b"02269")]).event
    assert len(event.data.due_date_changes) == 2  # an entry that is no object is passed over, not the end of the list


@pytest.mark.parametrize("value", [{"ngay": "20251110170000"}, ["20251110170000"], 20251110170000])
def test_a_due_date_move_that_is_no_text_is_invalid_field(value: object) -> None:
    """A move of the due date given as an object, a list or a number is refused naming the field, never an
    `internal_error` from keeping it among the moves already seen (mutation test)."""
    for move, named in (({"NgayHenTraTruoc": "20251105170000", "NgayHenTraMoi": value}, "NgayHenTraMoi"),
                        ({"NgayHenTraTruoc": value, "NgayHenTraMoi": "20251110170000"}, "NgayHenTraTruoc")):
        r = rejected(Family.DOSSIER, orjson.dumps(portal_dossier(status=5, DanhSachHoSoBoSung=[move])), HDR).rejection
        assert (r.reason, r.field) == (Reason.INVALID_FIELD, f"DanhSachHoSoBoSung[0].{named}")


@pytest.mark.parametrize(("moves", "named"), [
    ({"NgayHenTraTruoc": "20251105170000", "NgayHenTraMoi": "17/11/2025"}, "NgayHenTraMoi"),
    ({"DanhSachHoSoBoSung": [{"NgayHenTraTruoc": "20251105170000", "NgayHenTraMoi": "17/11/2025"}]},
     "DanhSachHoSoBoSung[0].NgayHenTraMoi"),
    ({"NgayHenTraTruoc": "20251105170000", "NgayHenTraMoi": "20251110170000",  # a top-level move first
      "DanhSachHoSoBoSung": ["not an object", {"NgayHenTraTruoc": "junk", "NgayHenTraMoi": "20251112170000"}]},
     "DanhSachHoSoBoSung[1].NgayHenTraTruoc"),
])
def test_a_bad_move_of_the_due_date_is_named_where_the_portal_sent_it(moves: dict[str, object], named: str) -> None:
    """A dead letter names the move's own portal field and entry, as sent: before, the index among all moves
    (the top level's counted first) and our field name, `NgayHenTraMoi[1].previous_due_at` for the last case
    (mutation test)."""
    r = rejected(Family.DOSSIER, orjson.dumps(portal_dossier(status=5, **moves)), HDR).rejection
    assert (r.reason, r.field) == (Reason.INVALID_FIELD, named)
    assert r.message.startswith(f"{named}: ")


@pytest.mark.parametrize("source", ["/communes/02269/mobile team app", "/communes/02269/a|b{c}", "/communes/%zz",
                                    "/communes/02269/ứng-dụng", "02269:one-stop", "/x#a#b"])
def test_a_source_that_is_no_uri_reference_is_refused_in_every_shape(source: str) -> None:
    """CloudEvents' `source` is a URI-reference: Java's SDK throws reading a canonical record whose source is none
    (`new URI(...)`), stopping a consumer at it. Structured, binary and portal records are refused alike, without
    quoting it (it may hold what a producer should not have put there)."""
    structured = {**canonical_dossier(), "source": source}
    binary = wire.encode(accepted(Family.DOSSIER, dumps(canonical_dossier())).event)
    headers = [(k, source.encode() if k == "ce_source" else v) for k, v in binary.headers]
    portal = [*HDR, ("source", source.encode())]
    for outcome in (rejected(Family.DOSSIER, dumps(structured)), rejected(Family.DOSSIER, binary.value, headers),
                    rejected(Family.DOSSIER, dumps(portal_dossier()), portal)):
        assert [(p.reason, p.field) for p in outcome.problems] == [(Reason.INVALID_FIELD, "source")], outcome
        assert source not in outcome.problems[0].message


@pytest.mark.parametrize("source", ["/communes/02269/one-stop", "/communes/02269/%E1%BB%A9ng-d%E1%BB%A5ng",
                                    "urn:commune:02269:portal", "https://portal.example.vn/x?y=1#z"])
def test_a_uri_reference_is_a_source(source: str) -> None:
    assert accepted(Family.DOSSIER, dumps({**canonical_dossier(), "source": source})).event.source == source


@pytest.mark.parametrize("extra", [{"partitionkey": "02269"}, {"dataschema": "https://example.vn/dossier.json"},
                                   {"tracestate": "vendor=1"}, {"datacontenttype": "application/json; charset=utf-8"},
                                   {"datacontenttype": "Application/JSON;charset=\"UTF-8\""}])
def test_what_the_cloudevents_sdks_add_to_a_structured_event_is_passed_over(extra: dict[str, str]) -> None:
    """The SDKs' Kafka key mapper writes `partitionkey`; `dataschema` and `tracestate` are CloudEvents' own; a JSON
    content type may name its charset. Each refused the whole event (`unknown_field`, `invalid_field`); the canonical
    event is the same as without them."""
    plain = accepted(Family.DOSSIER, dumps(canonical_dossier())).event
    assert accepted(Family.DOSSIER, dumps({**canonical_dossier(), **extra})).event == plain


def test_a_structured_event_made_by_the_cloudevents_sdk_is_accepted() -> None:
    """The official Python SDK's structured Kafka record, with the `partitionkey` its key mapper sets."""
    from cloudevents.v1.http import CloudEvent
    from cloudevents.v1.kafka import to_structured

    event = canonical_dossier()
    attributes = {k: v for k, v in event.items() if k != "data"} | {"partitionkey": "02269"}
    message = to_structured(CloudEvent(attributes, event["data"]))
    assert accepted(Family.DOSSIER, message.value, list(message.headers.items())).event.id == event["id"]


def test_another_attribute_is_still_refused() -> None:
    """Only those are passed over: a misspelt attribute is still `unknown_field`, so its sender hears of it."""
    outcome = rejected(Family.DOSSIER, dumps({**canonical_dossier(), "subjct": "TL-1"}))
    assert [(p.reason, p.field) for p in outcome.problems] == [(Reason.UNKNOWN_FIELD, "subjct")]


def test_binary_mode_without_ce_specversion_is_named_as_such() -> None:
    """`ce_*` headers and the data as the value, but no `ce_specversion`: the record was read as structured JSON and
    refused as `missing_field type`, which sent its producer looking for the wrong mistake."""
    record = wire.encode(accepted(Family.DOSSIER, dumps(canonical_dossier())).event)
    headers = [(k, v) for k, v in record.headers if k != "ce_specversion"]
    outcome = rejected(Family.DOSSIER, record.value, headers)
    assert [(p.reason, p.field) for p in outcome.problems] == [(Reason.MISSING_FIELD, "ce_specversion")]


@pytest.mark.parametrize("status", [float(s) for s in DossierStatus])
def test_a_status_written_as_a_whole_number_with_a_fraction_point_is_that_status(status: float) -> None:
    """JSON's `4.0` is the number 4: the published schema's enum takes it (JSON Schema compares numbers by value), so
    intake does, and publishes `4` (contracts audit: it was dead-lettered as `unknown_status`)."""
    event = canonical_dossier(status=int(status), ended_at="2025-11-04T10:00:00", returned_at="2025-11-04T11:00:00")
    event["data"]["status"] = status
    out = accepted(Family.DOSSIER, orjson.dumps(event)).event
    assert out.data.status == DossierStatus(int(status))
    assert orjson.loads(wire.encode(out).value)["status"] == int(status)


@pytest.mark.parametrize("status", [4.5, -0.5, 1e300, 11.0, 0.0])
def test_a_status_with_a_fraction_or_out_of_range_is_refused(status: float) -> None:
    event = canonical_dossier()
    event["data"]["status"] = status
    assert rejected(Family.DOSSIER, orjson.dumps(event)).problems[0].reason is Reason.UNKNOWN_STATUS


@pytest.mark.parametrize(("earlier", "later"), DATE_ORDER)
def test_a_date_whose_earlier_date_is_absent_is_not_compared(earlier: str, later: str) -> None:
    """The order of two dates is checked only when both are given: a dossier rejected at reception (status 3) with
    only the later date is accepted, never an `internal_error` from comparing a date with nothing (mutation test)."""
    dates = dict.fromkeys(("submitted_at", "received_at", "due_at", "ended_at", "returned_at", "rejected_at"))
    event = canonical_dossier(status=3, **{**dates, later: "2025-11-02T08:00:00"})
    assert getattr(accepted(Family.DOSSIER, orjson.dumps(event)).event.data, later) is not None
    assert earlier not in [k for k, v in event["data"].items() if v is not None]


_NEEDED = {1: (), 3: (), 7: (), 8: (), **dict.fromkeys((2, 4, 5, 6), ("received_at", "due_at")),
           9: ("received_at", "due_at", "ended_at"), 10: ("received_at", "due_at", "ended_at", "returned_at")}
"""The dates each status needs (DOMAIN.md): received and due once accepted, open or completed; ended once completed;
returned once returned. Written out here, not read from `schemas.dossier.REQUIRED_DATES`, so the test can fail."""
_ALL_DATES = {"submitted_at": "2025-11-01T08:00:00", "received_at": "2025-11-01T08:05:00",
              "due_at": "2025-11-05T17:00:00", "ended_at": "2025-11-04T10:00:00", "returned_at": "2025-11-04T11:00:00"}


@pytest.mark.parametrize("status", sorted(_NEEDED))
def test_each_status_needs_its_dates_and_no_other(status: int) -> None:
    """An accepted or open dossier without its receipt or due date is `missing_field` (without a due date it would
    never count as overdue); a registered, rejected, withdrawn or stopped one needs none (no test held the open
    statuses' dates: dropping them went unseen; mutation test)."""
    bare = {**dict.fromkeys(_ALL_DATES), **{k: v for k, v in _ALL_DATES.items() if k in _NEEDED[status]}}
    assert accepted(Family.DOSSIER, orjson.dumps(canonical_dossier(status=status, **bare))).event.data.status == status
    for name in _NEEDED[status]:
        r = rejected(Family.DOSSIER, orjson.dumps(canonical_dossier(status=status, **{**bare, name: None}))).rejection
        assert (r.reason, r.field) == (Reason.MISSING_FIELD, f"data.{name}"), name


def test_dates_out_of_order_are_refused_naming_both_dates() -> None:
    """The integrator is told which date is before which, with both times (no test read the message: every name and
    time in it could go; mutation test)."""
    event = canonical_dossier(received_at="2025-11-01T07:00:00")  # 00:00Z, before submitted_at 01:00Z
    r = rejected(Family.DOSSIER, orjson.dumps(event)).rejection
    assert (r.reason, r.field) == (Reason.IMPOSSIBLE_DATES, "data.received_at")
    said = "received_at (2025-11-01T00:00:00+00:00) is before submitted_at (2025-11-01T01:00:00+00:00)"
    assert r.message.endswith(said)


@pytest.mark.parametrize(("sent", "channel"), [
    (" 3 ", Channel.POSTAL), ("1", Channel.COUNTER), (4, Channel.MOBILE_TEAM), ("online", Channel.ONLINE),
    ("quay", None), ("2a", None)])
def test_a_portal_channel_is_its_code_as_number_or_text_or_its_name(sent: object, channel: Channel | None) -> None:
    """`KenhThucHien` as a code (number or digits) or as our channel's name is that channel; other text is an
    `invalid_field` naming it, never an `internal_error` from reading it as a number (mutation test)."""
    outcome = normalise(Family.DOSSIER, dumps(portal_dossier(KenhThucHien=sent)), HDR)
    if channel is None:
        assert isinstance(outcome, Rejected)
        assert (outcome.rejection.reason, outcome.rejection.field) == (Reason.INVALID_FIELD, "KenhThucHien")
    else:
        assert isinstance(outcome, Accepted) and outcome.event.data.channel is channel


@pytest.mark.parametrize("text", ["4", " 10 ", "09"])
def test_a_status_code_sent_as_text_is_that_status(text: str) -> None:
    """Integrators send what their software has: a portal status code as a string of digits is the code itself (no
    test held it: refusing every such string went unseen; mutation test)."""
    extra = {"NgayKetThucXuLy": "20251104100000", "NgayTra": "20251104110000"}
    event = accepted(Family.DOSSIER, dumps(portal_dossier(TrangThaiHoSo=text, **extra)), HDR).event
    assert event.data.status == DossierStatus(int(text))


@pytest.mark.parametrize("status", [True, False, "four", "4a", [4], {"code": 4}])
def test_a_status_that_is_no_number_is_unknown_status(status: object) -> None:
    """JSON's `true` is no status code, though Python's True equals 1: the published enum refuses it, so intake does
    (taken as 1 it would register a dossier its sender never registered); text, a list or an object is the same
    `unknown_status`, not an `invalid_field` or an `internal_error` (mutation test)."""
    event = canonical_dossier()
    event["data"]["status"] = status
    assert rejected(Family.DOSSIER, orjson.dumps(event)).problems[0].reason is Reason.UNKNOWN_STATUS
    portal = portal_dossier()
    portal["TrangThaiHoSo"] = status
    assert rejected(Family.DOSSIER, dumps(portal), HDR).problems[0].reason is Reason.UNKNOWN_STATUS


@pytest.mark.parametrize("family", [Family.MOBILE_TEAM, Family.ANNOUNCEMENT])
def test_a_portal_dossier_sent_as_another_family_is_told_it_is_a_dossier(family: Family) -> None:
    """A portal dossier posted with `?family=mobile-team` (or written to that family's topic) was told only that a
    CloudEvents `type` is required: the integrator's walkthrough could not tell why. Still that reason and field
    (what the counters count), now saying the record is a portal dossier, and nothing of its values."""
    value = dumps(portal_dossier())
    [problem] = rejected(family, value, HDR).problems
    assert (problem.reason, problem.field) == (Reason.MISSING_FIELD, "type")
    assert "portal's dossier shape" in problem.message and f"not {family.value}" in problem.message
    assert "TL-251101-0001" not in problem.message and "0912345678" not in problem.message
    [other] = rejected(family, dumps({"id": "x-1"})).problems  # no portal shape: the message as before
    assert other.message == "type: a CloudEvents `type` string is required"
