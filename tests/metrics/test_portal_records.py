"""Portal records (the `DongBoHoSoMC` shape) through intake's normalise and metrics' decode, as a commune's
integration sends them: the figures metrics exports from them (metrics audit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import wire
from schemas.codes import DossierStatus
from schemas.dossier import DossierStatusChanged
from schemas.notification import NotificationKind
from schemas.times import VIETNAM
from schemas.topics import Family
from services.intake import portal
from services.intake.normalise import normalise
from services.metrics import decoding
from services.metrics.decoding import Decode
from services.metrics.exposition import render
from services.metrics.partition import PartitionState
from services.notify import deadlines
from tests.notify.test_deadline_index import partition

pytestmark = pytest.mark.unit
C = "02269"
DECODES = {"fast path": decoding.fast, "view": decoding.slim}


WEEK_LATER = datetime(2025, 11, 10, 3, 0, tzinfo=UTC)


def canonical(payload: dict[str, Any]) -> DossierStatusChanged:
    """The canonical event intake makes of one portal payload of commune `C`."""
    out = normalise(Family.DOSSIER, orjson.dumps(payload), [(portal.COMMUNE_HEADER, C.encode())])
    assert isinstance(out.event, DossierStatusChanged), out
    return out.event


def record(payload: dict[str, Any]) -> tuple[wire.Headers, bytes | None]:
    """The canonical record intake writes for one portal payload of commune `C`."""
    rec = wire.encode(canonical(payload))
    return rec.headers, rec.value


def synced(seq: int, status: int, accepted: str = "20251103081000") -> dict[str, Any]:
    """Dossier `seq` as its commune syncs it in `status`, without progress steps: a status that brings no date of
    its own (in progress, withdrawn, stopped) has the time of the latest date the record carries."""
    return {"MaHoSo": f"000.00.01.H01-251103-{seq:04d}", "MaTTHC": "1.001234", "KenhThucHien": 1,
            "TrangThaiHoSo": status, "NgayNopHoSo": "20251103080000", "NgayTiepNhan": accepted,
            "NgayHenTra": "20251106170000"}


def open_and_overdue(decode: Decode, payloads: list[dict[str, Any]]) -> tuple[int, int]:
    """Metrics' open and overdue dossiers of `C` a week on, the records applied in the order given."""
    part = PartitionState(0, {})
    for payload in payloads:
        part.apply(decode(*record(payload)))
    totals = part.communes[C]
    return totals.get("open"), totals.overdue(WEEK_LATER.timestamp())


def tracker_alerts(payloads: list[dict[str, Any]]) -> list[str]:
    """The kinds of alert notify's deadline tracker fires over that week, the events recorded in the order given."""
    with partition() as part:
        for payload in payloads:
            view = deadlines.tracked(canonical(payload))
            if view is not None:
                part.record_state(view)
        return [a.kind.value for a, _ in part.fire(WEEK_LATER) if a is not None]


def returned(code: str, fee_vnd: int, paid_online: int) -> dict[str, Any]:
    """A dossier processed and returned on 3 November 2025, with one fee line."""
    return {"MaHoSo": code, "MaTTHC": "1.001193", "KenhThucHien": 2, "TrangThaiHoSo": 10,
            "NgayNopHoSo": "20251103080000", "NgayTiepNhan": "20251103081000", "NgayHenTra": "20251103170000",
            "NgayKetThucXuLy": "20251103100000", "NgayTra": "20251103110000", "DuocThanhToanTrucTuyen": paid_online,
            "DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "MucPhi": fee_vnd}]}


@pytest.mark.parametrize("decode", DECODES.values(), ids=DECODES.keys())
def test_a_fee_line_of_0_vnd_is_no_fee(decode: Decode) -> None:
    """Two free procedures whose fee line is 0 VND and one 30,000 VND fee paid online: 1 dossier with fees, paid
    online rate 1.0, whichever way the record is decoded (the 0 VND lines counted: 3 with fees, rate 0.33)."""
    part = PartitionState(0, {})
    for code, fee, paid in (("HS-1", 0, 0), ("HS-2", 0, 0), ("HS-3", 30_000, 1)):
        part.apply(decode(*record(returned(code, fee, paid))))
    counts = part.communes[C].counts
    assert (counts[("with_fees",)], counts[("paid_online",)]) == (1, 1)
    assert f'commune_dossiers_paid_online_ratio{{province="08",commune="{C}"}} 1.0' in render([part], 0)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, 9_999), st.sampled_from([7, 8]), st.permutations([0, 1, 2]),
       st.sampled_from(list(DECODES.values())))
def test_a_withdrawal_without_a_date_of_its_own_closes_the_dossier_in_any_order(
        seq: int, closing: int, order: list[int], decode: Decode) -> None:
    """Accepted, in progress, then withdrawn (7) or stopped (8), all of the same time: metrics ends with the dossier
    neither open nor overdue, and notify's tracker alerts nobody, whatever the arrival order (ordered by event id,
    a hash, 132 of 200 withdrawn dossiers stayed open and overdue)."""
    sent = [synced(seq, status) for status in (2, 4, closing)]
    arrived = [sent[i] for i in order]
    assert len({canonical(p).time for p in sent}) == 1
    assert open_and_overdue(decode, arrived) == (0, 0)
    assert tracker_alerts(arrived) == []


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(0, 9_999), st.permutations([0, 1]), st.sampled_from(list(DECODES.values())))
def test_a_dossier_registered_and_accepted_in_the_same_second_is_open_in_any_order(
        seq: int, order: list[int], decode: Decode) -> None:
    """Registered (1) and accepted (2) at the same time: accepted is the later stage, so the dossier is open (and
    overdue a week on) in metrics, and notify's tracker alerts its officer, whichever arrives first."""
    sent = [synced(seq, status, accepted="20251103080000") for status in (1, 2)]
    arrived = [sent[i] for i in order]
    assert canonical(sent[0]).time == canonical(sent[1]).time
    assert open_and_overdue(decode, arrived) == (1, 1)
    assert tracker_alerts(arrived) == ["overdue"]


@pytest.mark.parametrize("decode", DECODES.values(), ids=DECODES.keys())
def test_a_dossier_due_at_17_00_is_overdue_only_once_its_due_day_is_over(decode: Decode) -> None:
    """Due 6 November at 17:00 (`NgayHenTra` 20251106170000, the simulator's closing time): in progress, it is not
    overdue at 18:00 nor at 23:59:59 that day in metrics' gauge or notify's tracker, and is in both from 00:00 on 7
    November; finished at 19:30 that day it counts on time (timeliness compares days). It was overdue, and its
    officer alerted, from 17:00."""
    def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
        return datetime(2025, 11, day, hour, minute, second, tzinfo=VIETNAM).astimezone(UTC)

    in_progress = synced(1, 4)
    part = PartitionState(0, {})
    part.apply(decode(*record(in_progress)))
    totals = part.communes[C]
    evening, last_second, midnight = at(6, 18), at(6, 23, 59, 59), at(7, 0)
    assert [totals.overdue(t.timestamp()) for t in (evening, last_second, midnight)] == [0, 0, 1]
    view = deadlines.tracked(canonical(in_progress))
    assert view is not None and view.due_at == at(6, 17)
    kinds = [[a.kind for a in deadlines.alerts_due(view, t)] for t in (evening, last_second, midnight)]
    assert kinds == [[NotificationKind.DUE_SOON], [NotificationKind.DUE_SOON], [NotificationKind.OVERDUE]]
    assert deadlines.next_alert_at(view.model_copy(update={"alerted_due_soon": True})) == midnight
    done = {**in_progress, "TrangThaiHoSo": int(DossierStatus.PROCESSED), "NgayKetThucXuLy": "20251106193000"}
    part.apply(decode(*record(done)))
    assert (totals.get("open"), totals.overdue(midnight.timestamp() + timedelta(days=1).total_seconds())) == (0, 0)
    assert totals.get("completed", "counter", "on_time") == 1


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 9_999), st.permutations([0, 1]), st.sampled_from(list(DECODES.values())))
def test_a_due_date_moved_by_a_request_for_documents_holds_in_any_order(
        seq: int, order: list[int], decode: Decode) -> None:
    """In progress (4, due 6 November), then more documents requested (5) moving the due date to 20 November, both
    of the same time (the request brings no date of its own): a week on the dossier is open and not overdue in
    metrics, and notify's tracker alerts nobody, whichever arrives first (ordered by event id, 13 of 40 such dossiers
    were overdue; the tracker took the last to arrive)."""
    moved = {"NgayHenTra": "20251120170000",
             "DanhSachHoSoBoSung": [{"NgayHenTraTruoc": "20251106170000", "NgayHenTraMoi": "20251120170000"}]}
    sent = [synced(seq, 4), synced(seq, 5) | moved]
    arrived = [sent[i] for i in order]
    assert canonical(sent[0]).time == canonical(sent[1]).time
    assert open_and_overdue(decode, arrived) == (1, 0)
    assert tracker_alerts(arrived) == []
