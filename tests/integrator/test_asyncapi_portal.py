"""The AsyncAPI document's portal dossier shape states what intake enforces: a record it accepts, intake accepts."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from schemas import asyncapi
from schemas.codes import DossierStatus
from schemas.dossier import REQUIRED_DATES
from schemas.events import Family
from schemas.limits import MAX_ITEMS
from schemas.portal import DATE_PATTERN, FIELD_NAMES
from schemas.text import nfc
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Outcome

MESSAGE = yaml.safe_load(asyncapi.COMMITTED.read_text(encoding="utf-8"))["components"]["messages"]["portalDossier"]
PAYLOAD = Draft202012Validator(MESSAGE["payload"], format_checker=FormatChecker())
HEADERS = Draft202012Validator(MESSAGE["headers"], format_checker=FormatChecker())
COMMUNE = "02269"
BASE = {"MaHoSo": "TL-251103-0007", "MaTTHC": "1.001234", "KenhThucHien": 1, "TrangThaiHoSo": 4,
        "NgayNopHoSo": "20251103081026", "NgayTiepNhan": "20251103081026", "NgayHenTra": "20251107170000"}
DATES = [FIELD_NAMES[n] for n in ("submitted_at", "received_at", "due_at", "ended_at", "returned_at", "rejected_at")]


def _intake(record: dict[str, Any], source: str | None = None) -> Outcome:
    headers = [("commune-code", COMMUNE.encode())] + ([("source", source.encode())] if source is not None else [])
    # json, not orjson: a value the schema leaves untyped (`ThoiDiemXuLy`) may be an integer past 64 bits, which a
    # portal may send and orjson cannot write (intake reads it, and passes it over)
    return normalise(Family.DOSSIER, json.dumps(record, ensure_ascii=False).encode(), headers)


def _verdict(outcome: Outcome) -> str:
    if isinstance(outcome, Accepted):
        return "accepted"
    return f"{outcome.rejection.reason.value} {outcome.rejection.field}"


@pytest.mark.unit
@pytest.mark.parametrize("changes", [
    {"DuocThanhToanTrucTuyen": 2},
    {"TaiLieuNop": [{"TenTaiLieu": "Tờ khai", "DuocSoHoa": 2}]},
    {"DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí hộ tịch"}]},
    {"DanhSachLePhi": [{"TenPhiLePhi": "x", "MucPhi": 10**16}]},
    {"MaTTHC": "1.001234 / QĐ"},
    {"MaHoSo": "H" * 65},
    {"MaHoSo": "TL-1\t2"},
    {"MaHoSo": "   "},
    {"TenTTHC": "x" * 501},
    {"SoDienThoaiChuHoSo": "0912 345 678 / 0987 65"},
    {"ChuHoSo": "N" * 201},
    {"DanhSachLePhi": [{"TenPhiLePhi": "x", "MucPhi": 1}] * 1001},
    {"QuaTrinhXuLy": [{}] * 1001},
    {"DanhSachHoSoBoSung": [{"NgayHenTraTruoc": f"{2000 + i // 12}{1 + i % 12:02}07170000",
                             "NgayHenTraMoi": "20991231170000"} for i in range(1000)],
     "NgayHenTraTruoc": "20251107170000", "NgayHenTraMoi": "20251121170000"},  # 1001 moves in all
    {"NgayHenTra": "2025110717"},
    {"NgayNopHoSo": "20251303081026"},
    {"NgonNguUuTien": "fr"},
], ids=lambda changes: ",".join(changes))
def test_a_record_the_portal_schema_accepts_is_no_dead_letter(changes: dict[str, Any]) -> None:
    """Each record of the contract audit intake dead-letters for a field's own bound (a flag of 2, a fee without
    MucPhi or past 10^15, a code with a space, an id past 64 characters or with a tab, text past its length, a list
    past 1000 items) is refused by the published schema too: the hand-written one accepted each."""
    record = {**BASE, **changes}
    outcome = _intake(record)
    assert not isinstance(outcome, Accepted)
    assert not PAYLOAD.is_valid(record), f"the schema accepts a record intake refuses: {_verdict(outcome)}"


@pytest.mark.unit
def test_a_source_header_the_schema_accepts_is_one_intake_takes() -> None:
    """A `source` header that is no URI-reference (a space in it) is refused by the headers' schema, as intake
    dead-letters it (`invalid_field source`); the schema said any string."""
    headers = {"commune-code": COMMUNE, "source": "/communes/02269/mobile team"}
    assert not isinstance(_intake(BASE, headers["source"]), Accepted)
    assert not HEADERS.is_valid(headers)
    assert HEADERS.is_valid({"commune-code": COMMUNE, "source": "/communes/02269/mobile%20team"})
    assert isinstance(_intake(BASE, "/communes/02269/mobile%20team"), Accepted)


def _at_bound(schema: dict[str, Any]) -> Any:
    """A value at the schema's bound: a text of `maxLength`, a number at its `maximum`, a list of `maxItems`."""
    if "maxLength" in schema:
        return next(c for c in "x9" if re.search(schema.get("pattern", ""), c)) * schema["maxLength"]
    if "maximum" in schema:
        return schema["maximum"]
    return [_least(schema["items"])] * schema["maxItems"]


def _least(item: dict[str, Any]) -> dict[str, Any]:
    return {name: 1 for name in item.get("required", ())}  # the one required item field is an amount (MucPhi)


def _bounds() -> dict[str, dict[str, Any]]:
    """A change to the base record for each bound of the published schema, at the bound itself (ids name them)."""
    cases = {}
    for name, field in MESSAGE["payload"]["properties"].items():
        if {"maxLength", "maximum", "maxItems"} & field.keys():
            cases[name] = {name: _at_bound(field)}
        for inner, child in field.get("items", {}).get("properties", {}).items():
            if {"maxLength", "maximum"} & child.keys():
                cases[f"{name}.{inner}"] = {name: [{**_least(field["items"]), inner: _at_bound(child)}]}
    moves = [{"NgayHenTraTruoc": f"{2000 + i // 12}{1 + i % 12:02}07170000", "NgayHenTraMoi": "20991231170000"}
             for i in range(MAX_ITEMS - 1)]  # and the top-level move: as many moves as a dossier may hold
    cases["DanhSachHoSoBoSung with distinct moves"] = {"DanhSachHoSoBoSung": moves, "NgayHenTraTruoc": "20251107170000",
                                                      "NgayHenTraMoi": "20251121170000"}
    return cases


@pytest.mark.unit
@pytest.mark.parametrize("changes", list(_bounds().values()), ids=list(_bounds()))
def test_a_record_at_each_bound_of_the_portal_schema_is_accepted(changes: dict[str, Any]) -> None:
    """Each length, maximum and item count the published schema states is one intake accepts at the bound itself
    (the schema is no tighter than intake, and its lists' bounds are tested here rather than drawn by hypothesis)."""
    record = {**BASE, **changes}
    assert PAYLOAD.is_valid(record), [e.message[:80] for e in PAYLOAD.iter_errors(record)]
    outcome = _intake(record)
    assert isinstance(outcome, Accepted), _verdict(outcome)


_CLASS = re.compile(r"\^\[(.+)\]([*+])\$")


def _text(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Strings a string schema allows, in NFC (the schema counts lengths of NFC text, as intake does)."""
    low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
    pattern = schema.get("pattern")
    if pattern == DATE_PATTERN:
        return _date()
    shape = _CLASS.fullmatch(pattern or "")
    alphabet = st.characters(codec="utf-8")  # JSON text holds no lone surrogate
    if shape:
        alphabet = st.from_regex(f"[{shape[1]}]", fullmatch=True).filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF)
    spaces = [c for c in " \u00a0\u3000" if not pattern or re.match(pattern, c)]  # trimmed around text by intake
    text = st.text(st.one_of(alphabet, st.sampled_from(spaces)) if spaces else alphabet, min_size=low, max_size=high)
    extra = [re.compile(p["pattern"]) for p in schema.get("allOf", ())]
    return text.map(nfc).filter(lambda s: low <= len(s) <= high and all(p.search(s) for p in extra))


def _from(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a published schema allows (the keywords the portal schema uses, and nothing it leaves unsaid)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    types = schema.get("type", ["string", "integer", "null"])
    options = []
    for kind in types if isinstance(types, list) else [types]:
        if kind == "null":
            options.append(st.none())
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "integer":
            options.append(st.integers(schema.get("minimum"), schema.get("maximum")))
        elif kind == "string":
            options.append(_text(schema))
        elif kind == "array":
            options.append(st.lists(_from(schema["items"]), max_size=3))  # the bound itself: test_every_bound...
        elif kind == "object":
            properties = schema.get("properties", {})
            required = set(schema.get("required", ()))
            options.append(st.fixed_dictionaries(
                {k: _from(v) for k, v in properties.items() if k in required},
                optional={k: _from(v) for k, v in properties.items() if k not in required}))
    return st.one_of(options)


FORMS = ("%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S.%f+07:00", "%Y-%m-%dT%H:%MZ",
         "%Y-%m-%d")


def _date(form: str | None = None) -> st.SearchStrategy[str]:
    """A real time of 1976-2099 in one of the forms the schema names (the range and the calendar are said in words:
    no JSON Schema keyword states them)."""
    when = st.datetimes(datetime(1976, 1, 1), datetime(2099, 12, 31))
    return when.map(lambda t: t.strftime(form)) if form else st.sampled_from(FORMS).flatmap(
        lambda f: when.map(lambda t: t.strftime(f)))


@st.composite
def portal_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record each of whose fields the published schema allows, its dates one instant in one form (the dates a
    status needs and their order are the rules the schema leaves to words)."""
    properties = MESSAGE["payload"]["properties"]
    record = draw(_from({"type": "object", "required": MESSAGE["payload"]["required"],
                         "properties": {k: v for k, v in properties.items() if k not in DATES}}))
    status = DossierStatus(record[FIELD_NAMES["status"]])
    form = draw(st.sampled_from(FORMS))
    when = draw(_date(form))
    needed = {FIELD_NAMES[n] for n in REQUIRED_DATES[status]} | {FIELD_NAMES["submitted_at"]}
    for name in DATES:
        if name in needed or draw(st.booleans()):
            record[name] = when
    return record


@pytest.mark.unit
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(portal_records(), st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=30),
                                   st.from_regex(r"/communes/[0-9]{5}/[a-z-]{1,12}")))
@example({**BASE, "QuaTrinhXuLy": [{"ThoiDiemXuLy": 10**30}]}, None)  # untyped: any value, past 64 bits too
def test_intake_accepts_what_the_published_portal_schema_accepts(record: dict[str, Any], source: str | None) -> None:
    """hypothesis: a record drawn from the published portal schema's own properties (flags, codes, lengths, lists at
    their bound, fees at their maximum), with its dates consistent, and any `source` header the headers' schema
    accepts, is accepted by intake."""
    assert PAYLOAD.is_valid(record), [e.message for e in PAYLOAD.iter_errors(record)][:3]
    if source is not None and not HEADERS.is_valid({"commune-code": COMMUNE, "source": source}):
        source = None
    outcome = _intake(record, source)
    assert isinstance(outcome, Accepted), _verdict(outcome)
