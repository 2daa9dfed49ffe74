"""The fast path of metrics' decode: a dossier event as intake writes it, decoded by msgspec (ADR 0023).

Dossier status changes are most of the national traffic, and their slim view (`schemas.metrics_views`) still
cost ~25 µs a record in pydantic, half of the worker's core. This path reads the same fields with msgspec
(a C decoder made for typed JSON; ~2 µs for the data) and checks them with rules **no looser** than the
view's: whatever it cannot decide for certain (a string that pydantic would strip, a time not in the
canonical `...Z` form, a type it does not decode, any error at all) returns None, and the caller decodes
the record with the view, whose answer stands. So the path never refuses a record and never raises; what
it accepts, the view accepts with the same fields (hypothesis holds the two equal, `tests/metrics/
test_fast_decode.py`). Limits come from the registered models (`schemas.dossier`, `schemas.envelope`),
not copied here.

Checks that are stricter than the view's, on purpose (the record then takes the view's path):
- a text attribute or identifier must be printable (`str.isprintable`: no control, format or separator
  character, which includes the identifiers' forbidden `schemas.limits.CONTROL`) and not begin or end with
  a space (pydantic strips whitespace before its checks);
- times only in the canonical form intake writes (`schemas.times.is_canonical_text`);
- every byte of the value valid UTF-8, at most `DEPTH_LIMIT` brackets in it and no run of more than
  `NUMBER_DIGITS` digits: msgspec skips the fields it does not read without checking their text's
  encoding, their depth or the size of their numbers, where pydantic refuses all three (found by the
  hypothesis test).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

import msgspec
from annotated_types import MaxLen
from pydantic import BaseModel

from schemas.admin import commune_provinces
from schemas.codes import COMPLETED_STATUSES, Channel, DossierStatus, Timeliness
from schemas.dossier import DOSSIER_STATUS_CHANGED, DossierData, Fee, timeliness_of
from schemas.envelope import SPECVERSION, Event
from schemas.limits import EARLIEST, LATEST, MAX_AMOUNT_VND, MAX_ITEMS
from schemas.metrics_views import REQUIRED_DATES
from schemas.times import is_canonical_text
from schemas.trace import PATTERN as TRACEPARENT
from schemas.trace import derive
from schemas.wire import ATTRIBUTES, CE_PREFIX, Headers

DEPTH_LIMIT: Final = 200
"""pydantic's JSON parser refuses nesting past 200 levels; a value with at most this many `[` and `{` bytes
cannot nest deeper (tests/metrics/test_fast_decode.py finds the parser's limit)."""
NUMBER_DIGITS: Final = 4300
"""pydantic's JSON parser refuses a number whose integer part has more digits (Python's `int` text limit); a
value of at most this many bytes cannot hold one, a longer one is searched for a run of more digits."""
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (NUMBER_DIGITS + 1))


def max_length(model: type[BaseModel], name: str) -> int:
    """The registered model's `max_length` of field `name` (read, not copied)."""
    for constraint in model.model_fields[name].metadata:
        if isinstance(constraint, MaxLen):
            return constraint.max_length
    raise LookupError(f"{model.__name__}.{name} has no max_length")


ID_MAX, SOURCE_MAX, SUBJECT_MAX = (max_length(Event, n) for n in ("id", "source", "subject"))
CODE_MAX = max_length(DossierData, "dossier_code")
FEE_NAME_MAX = max_length(Fee, "name")
_TRACEPARENT = re.compile(TRACEPARENT)
_HEADERS: Final = {f"{CE_PREFIX}{name}": name for name in ATTRIBUTES}
_COMPLETED = frozenset(COMPLETED_STATUSES)


class _Fee(msgspec.Struct, forbid_unknown_fields=True):
    amount_vnd: int
    name: str | None = None


class _Data(msgspec.Struct):
    """The fields `DossierFacts` reads; every other field is skipped (times as text, checked below)."""

    dossier_code: str
    channel: Channel
    status: DossierStatus
    received_at: str | None = None
    due_at: str | None = None
    ended_at: str | None = None
    fees: list[_Fee] = []
    paid_online: bool = False
    digitised: bool = False
    timeliness: Timeliness | None = None


_DECODER = msgspec.json.Decoder(_Data)


class Facts(msgspec.Struct, frozen=True):
    """What `schemas.metrics_views.DossierFacts` holds, as the merges read it (`services.metrics.reads`)."""

    dossier_code: str
    channel: Channel
    status: DossierStatus
    received_at: datetime | None
    due_at: datetime | None
    ended_at: datetime | None
    fees: list[_Fee]
    paid_online: bool
    digitised: bool
    timeliness: Timeliness | None


class FastDossier(msgspec.Struct, frozen=True):
    """A dossier status change decoded by the fast path: the envelope `DossierView` holds, and its facts."""

    id: str
    source: str
    time: datetime
    subject: str
    commune: str
    province: str
    traceparent: str
    data: Facts
    type: str = DOSSIER_STATUS_CHANGED
    specversion: str = SPECVERSION
    datacontenttype: str = "application/json"


def _text(value: str, limit: int) -> bool:
    """Non-empty, within `limit`, printable, no space at either end: then pydantic's strip changes nothing and
    the identifier pattern holds."""
    return 0 < len(value) <= limit and value.isprintable() and value[0] != " " and value[-1] != " "


def _time(value: str | None) -> datetime | None:
    """A canonical time as `UtcDateTime` parses it; raises ValueError for anything else (None passes)."""
    if value is None:
        return None
    if not is_canonical_text(value):
        raise ValueError
    parsed = datetime.fromisoformat(value)
    if not EARLIEST <= parsed <= LATEST:
        raise ValueError
    return parsed


def dossier(headers: Headers, value: bytes | None) -> FastDossier | None:
    """The record as the fast path reads it, or None: the caller decodes it with the view. Never raises."""
    try:
        return _dossier(headers, value)
    except Exception:  # anything this path cannot read is the view's to decide
        return None


def _dossier(headers: Headers, value: bytes | None) -> FastDossier | None:
    if value is None or value.count(b"[") + value.count(b"{") > DEPTH_LIMIT:
        return None
    if len(value) > NUMBER_DIGITS and _LONG_NUMBER.search(value) is not None:
        return None
    attrs: dict[str, str] = {}
    for key, raw in headers:
        name = _HEADERS.get(key)
        if name is not None:  # every one decoded, the last of repeated ones kept: as `views.header_attributes`
            attrs[name] = raw.decode()
    if attrs.get("type") != DOSSIER_STATUS_CHANGED or attrs.get("specversion", SPECVERSION) != SPECVERSION:
        return None
    value.decode()  # UTF-8 throughout (UnicodeDecodeError: the view's to refuse)
    event_id, source, subject = attrs["id"], attrs["source"], attrs["subject"]
    commune, province = attrs["commune"], attrs["province"]
    if not (_text(event_id, ID_MAX) and _text(source, SOURCE_MAX) and _text(subject, SUBJECT_MAX)):
        return None
    if commune_provinces().get(commune) != province:
        return None
    trace = attrs.get("traceparent")
    if trace is None:
        traceparent = derive(source, event_id)
    elif _TRACEPARENT.fullmatch(traceparent := trace) is None:
        return None
    time = _time(attrs["time"])
    if time is None:
        return None
    facts = _facts(_DECODER.decode(value))
    if facts is None:
        return None
    return FastDossier(event_id, source, time, subject, commune, province, traceparent, facts)


def _facts(d: _Data) -> Facts | None:
    """`DossierFacts`' checks and derivation (required dates, their order, timeliness), or None."""
    if not _text(d.dossier_code, CODE_MAX) or len(d.fees) > MAX_ITEMS:
        return None
    for fee in d.fees:
        if not 0 <= fee.amount_vnd <= MAX_AMOUNT_VND or (fee.name is not None and len(fee.name) > FEE_NAME_MAX):
            return None
    received, due, ended = _time(d.received_at), _time(d.due_at), _time(d.ended_at)
    dates: dict[str, Any] = {"received_at": received, "due_at": due, "ended_at": ended}
    if any(dates[name] is None for name in REQUIRED_DATES[d.status]):
        return None
    if received is not None and ((ended is not None and ended < received) or (due is not None and due < received)):
        return None
    timeliness = timeliness_of(ended, due) if d.status in _COMPLETED else None
    return Facts(d.dossier_code, d.channel, d.status, received, due, ended, d.fees, d.paid_online, d.digitised,
                 timeliness)
