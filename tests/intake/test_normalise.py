"""Unit tests of intake's functional core: shapes accepted, normalisation, and every rejection reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from schemas import wire
from schemas.codes import Channel, DossierStatus, Priority, Timeliness
from schemas.deadletter import Reason
from schemas.events import Family
from services.intake.normalise import Accepted, Rejected, normalise
from tests.samples import (
    HDR,
    MALFORMED,
    canonical_dossier,
    dumps,
    portal_dossier,
    storm_scheduled,
    visit_completed,
    with_data,
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
])
def test_portal_event_time_is_the_latest_date_or_progress_step(progress: list, expected: datetime) -> None:
    """A malformed progress step only loses its own time, also when it would have been the latest."""
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
