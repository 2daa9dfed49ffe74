"""Portal records (the `DongBoHoSoMC` shape) through intake's normalise and metrics' decode, as a commune's
integration sends them: the figures metrics exports from them (metrics audit)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas import wire
from schemas.topics import Family
from services.intake import portal
from services.intake.normalise import normalise
from services.metrics import decoding
from services.metrics.decoding import Decode
from services.metrics.exposition import render
from services.metrics.partition import PartitionState

pytestmark = pytest.mark.unit
C = "02269"
DECODES = {"fast path": decoding.fast, "view": decoding.slim}


def record(payload: dict[str, Any]) -> tuple[wire.Headers, bytes | None]:
    """The canonical record intake writes for one portal payload of commune `C`."""
    out = normalise(Family.DOSSIER, orjson.dumps(payload), [(portal.COMMUNE_HEADER, C.encode())])
    assert out.event is not None, out
    rec = wire.encode(out.event)
    return rec.headers, rec.value


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
