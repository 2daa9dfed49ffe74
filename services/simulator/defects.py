"""Deliberately bad records, made from a valid step, each with the dead-letter reason intake should give.

The kinds are what integrators really send wrong: truncated JSON, legacy
encodings, wrong types, pre-reform commune codes, missing fields, impossible
dates, unknown status codes, a province that does not own the commune, and
portal payloads without their `commune-code` header.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from schemas import announcement as ann
from schemas import mobile_team as mt
from schemas.admin import commune_provinces, province_names
from schemas.deadletter import Reason
from schemas.dossier import DOSSIER_STATUS_CHANGED
from schemas.events import FAMILY_OF_TYPE, Family
from services.simulator import render
from services.simulator.render import COMMUNE_HEADER, DEFECT_HEADER, RawRecord, dumps
from services.simulator.world import Commune, Step

Body = dict[str, Any]

_ORDERED_PAIRS = {  # type -> (earlier field, later field) the model checks
    DOSSIER_STATUS_CHANGED: ("submitted_at", "received_at"),
    mt.VISIT_COMPLETED: ("started_at", "completed_at"),
    ann.BROADCAST_COMPLETED: ("started_at", "completed_at"),
    ann.ANNOUNCEMENT_SCHEDULED: ("starts_at", "ends_at"),
}
_WRONG_TYPES = {  # type -> (data field, value of the wrong type)
    DOSSIER_STATUS_CHANGED: ("paid_online", "có"),
    mt.VISIT_COMPLETED: ("households_visited", "mười hai"),
    mt.TRAINING_HELD: ("attendees", "khoảng 40"),
    ann.BROADCAST_COMPLETED: ("speakers_confirmed", "tất cả"),
}


def applicable(step: Step, portal_shape: bool) -> list[Reason]:
    kinds = [Reason.NOT_JSON, Reason.NOT_UTF8, Reason.INVALID_FIELD, Reason.UNKNOWN_COMMUNE, Reason.MISSING_FIELD]
    if step.type in _ORDERED_PAIRS and step.data.get(_ORDERED_PAIRS[step.type][1]) is not None:
        kinds.append(Reason.IMPOSSIBLE_DATES)
    if step.type == DOSSIER_STATUS_CHANGED:
        kinds.append(Reason.UNKNOWN_STATUS)
    kinds.append(Reason.MISSING_COMMUNE_HEADER if portal_shape else Reason.PROVINCE_MISMATCH)
    return kinds


def defective(rng: random.Random, step: Step, commune: Commune, event_id: str) -> RawRecord:
    """A bad record derived from `step` (a fresh event id, so it never collides with the valid one)."""
    portal_shape = render.uses_portal_shape(step, commune)
    reason = rng.choice(applicable(step, portal_shape))
    data = copy.deepcopy(step.data)
    if reason is Reason.IMPOSSIBLE_DATES:
        earlier, later = _ORDERED_PAIRS[step.type]
        data[earlier] = data[later] + timedelta(hours=rng.uniform(1, 48))
    step = Step(step.at, step.type, step.subject, data, step.history)
    if portal_shape:
        body = render.portal(step, commune)
        headers = [(COMMUNE_HEADER, commune.code.encode())]
    else:
        body = render.cloudevent(step, commune, event_id)
        headers = [("content-type", render.STRUCTURED_CONTENT_TYPE)]
    key = commune.code.encode()
    mutate = _PORTAL_MUTATIONS if portal_shape else _EVENT_MUTATIONS
    if reason in mutate:
        key, headers = mutate[reason](rng, step, body, key, headers)
    value = dumps(body)
    if reason is Reason.NOT_JSON:
        value = _truncated(rng, value)
    elif reason is Reason.NOT_UTF8:
        value = value.replace(b'":"', b'":"\xff\xfe', 1)
    return RawRecord(FAMILY_OF_TYPE[step.type], key, value, [*headers, (DEFECT_HEADER, reason.value.encode())])


def _truncated(rng: random.Random, value: bytes) -> bytes:
    """Cut short on a character boundary, so the record is broken JSON but still UTF-8."""
    cut = rng.randrange(1, len(value) - 1)
    while cut > 1 and (value[cut] & 0xC0) == 0x80:  # not inside a multi-byte character
        cut -= 1
    return value[:cut]


def _unknown_commune(rng: random.Random) -> str:
    while (code := f"{rng.randrange(100000):05d}") in commune_provinces():
        pass
    return code


Headers = list[tuple[str, bytes]]
Keyed = tuple[bytes, Headers]
"""The (possibly changed) key and headers of a mutated record."""
Mutation = Callable[[random.Random, Step, Body, bytes, Headers], Keyed]


def _event_wrong_type(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    if step.type in _WRONG_TYPES and rng.random() < 0.7:
        field, value = _WRONG_TYPES[step.type]
        body["data"][field] = value
    else:
        body["subject"] = rng.randrange(1, 10**6)
    return key, headers


def _event_missing(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    if FAMILY_OF_TYPE[step.type] is Family.DOSSIER:
        del body["data"][rng.choice(("procedure_code", "channel", "dossier_code"))]
    else:
        del body[rng.choice(("subject", "id", "time"))]
    return key, headers


def _event_unknown_commune(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    body["commune"] = _unknown_commune(rng)
    return body["commune"].encode(), headers


def _event_unknown_status(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    body["data"]["status"] = rng.choice((0, 11, 12, 99))
    return key, headers


def _event_province_mismatch(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    body["province"] = rng.choice([p for p in sorted(province_names()) if p != body["province"]])
    return key, headers


def _portal_wrong_type(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    body[rng.choice(("DuocThanhToanTrucTuyen", "HoSoCoThanhPhanSoHoa"))] = "có"
    return key, headers


def _portal_missing(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    del body[rng.choice(("MaTTHC", "KenhThucHien"))]
    return key, headers


def _portal_unknown_commune(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    code = _unknown_commune(rng).encode()
    return code, [(COMMUNE_HEADER, code)]


def _portal_unknown_status(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    body["TrangThaiHoSo"] = rng.choice((0, 11, 12, 99))
    return key, headers


def _portal_no_header(rng: random.Random, step: Step, body: Body, key: bytes, headers: Headers) -> Keyed:
    return key, [h for h in headers if h[0] != COMMUNE_HEADER]


_EVENT_MUTATIONS: dict[Reason, Mutation] = {
    Reason.INVALID_FIELD: _event_wrong_type, Reason.MISSING_FIELD: _event_missing,
    Reason.UNKNOWN_COMMUNE: _event_unknown_commune, Reason.UNKNOWN_STATUS: _event_unknown_status,
    Reason.PROVINCE_MISMATCH: _event_province_mismatch,
}
_PORTAL_MUTATIONS: dict[Reason, Mutation] = {
    Reason.INVALID_FIELD: _portal_wrong_type, Reason.MISSING_FIELD: _portal_missing,
    Reason.UNKNOWN_COMMUNE: _portal_unknown_commune, Reason.UNKNOWN_STATUS: _portal_unknown_status,
    Reason.MISSING_COMMUNE_HEADER: _portal_no_header,
}
