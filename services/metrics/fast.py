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
  a space (pydantic strips whitespace before its checks); a fee's name already in NFC (the view normalises
  text before checking its length, `schemas.text`);
- times only in the canonical form intake writes (`schemas.times.is_canonical_text`);
- every byte of the value valid UTF-8, at most `DEPTH_LIMIT` brackets in it and no run of more than
  `NUMBER_DIGITS` digits: msgspec skips the fields it does not read without checking their text's
  encoding, their depth or the size of their numbers, where pydantic refuses all three (found by the
  hypothesis test).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final
from unicodedata import is_normalized

import msgspec

from schemas.admin import commune_provinces
from schemas.codes import COMPLETED_STATUSES, Channel, DossierStatus, Timeliness
from schemas.dossier import DOSSIER_STATUS_CHANGED, DossierData, Fee, timeliness_of
from schemas.envelope import SPECVERSION, Event
from schemas.limits import EARLIEST, LATEST, MAX_AMOUNT_VND, MAX_ITEMS, max_length
from schemas.metrics_views import REQUIRED_DATES
from schemas.trace import PATTERN as TRACEPARENT
from schemas.trace import derive, has_zero_id
from schemas.wire import CE_PREFIX, Headers

DEPTH_LIMIT: Final = 200
"""pydantic's JSON parser refuses nesting past 200 levels; a value with at most this many `[` and `{` bytes
cannot nest deeper (tests/metrics/test_fast_decode.py finds the parser's limit)."""
NUMBER_DIGITS: Final = 4300
"""pydantic's JSON parser refuses a number whose integer part has more digits (Python's `int` text limit); a
value of at most this many bytes cannot hold one, a longer one is searched for a run of more digits."""
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (NUMBER_DIGITS + 1))


ID_MAX, SOURCE_MAX, SUBJECT_MAX = (max_length(Event, n) for n in ("id", "source", "subject"))
CODE_MAX = max_length(DossierData, "dossier_code")
FEE_NAME_MAX = max_length(Fee, "name")
_TRACEPARENT = re.compile(TRACEPARENT)
_TYPE_HEADER, _TYPE = f"{CE_PREFIX}type", DOSSIER_STATUS_CHANGED.encode()
_SPECVERSION_HEADER, _SPECVERSION = f"{CE_PREFIX}specversion", SPECVERSION.encode()
_TRACE_HEADER = f"{CE_PREFIX}traceparent"
_PROVINCE_OF = commune_provinces()
_COMPLETED = frozenset(COMPLETED_STATUSES)
_NEEDS = {status: tuple(name in names for name in ("received_at", "due_at", "ended_at"))
          for status, names in REQUIRED_DATES.items()}
"""Per status, whether it requires (received, due, ended): `schemas.metrics_views.REQUIRED_DATES`, unpacked."""


# gc=False: these hold text, times, enums and lists of fees, never a reference back, so no cycle can pass through
# them and the cyclic GC need not track the three objects every record makes (msgspec's documented use)
class _Fee(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    amount_vnd: int
    name: str | None = None


class _Data(msgspec.Struct, gc=False):
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


class Facts(msgspec.Struct, frozen=True, gc=False):
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


class FastDossier(msgspec.Struct, frozen=True, gc=False):
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
    """A canonical time as `UtcDateTime` parses it; raises ValueError for anything else (None passes).
    The shape is `schemas.times.is_canonical_text`'s, written out: this runs four times a record."""
    if value is None:
        return None
    if not (len(value) == 20 and value[19] == "Z" and value[10] == "T" and value[4] == value[7] == "-"
            and value[13] == value[16] == ":"):
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
    attrs = dict(headers)  # a repeated header (or a malformed one) is the view's to decide
    if (len(attrs) != len(headers) or attrs.get(_TYPE_HEADER) != _TYPE
            or attrs.get(_SPECVERSION_HEADER, _SPECVERSION) != _SPECVERSION):
        return None
    value.decode()  # UTF-8 throughout (UnicodeDecodeError: the view's to refuse)
    # every envelope attribute is decoded (type and specversion compared as bytes), as `views.header_attributes`
    event_id, source, subject = attrs["ce_id"].decode(), attrs["ce_source"].decode(), attrs["ce_subject"].decode()
    commune, province = attrs["ce_commune"].decode(), attrs["ce_province"].decode()
    stamp, trace = attrs["ce_time"].decode(), attrs.get("ce_traceparent")
    if not (_text(event_id, ID_MAX) and _text(source, SOURCE_MAX) and _text(subject, SUBJECT_MAX)):
        return None
    if _PROVINCE_OF.get(commune) != province:
        return None
    if trace is None:
        if _TRACE_HEADER in attrs:  # present without a value (a null header): the view's to refuse
            return None
        traceparent = derive(source, event_id)
    elif _TRACEPARENT.fullmatch(traceparent := trace.decode()) is None:
        return None
    elif has_zero_id(traceparent):  # W3C-invalid: replaced as `Event` replaces it
        traceparent = derive(source, event_id)
    time = _time(stamp)
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
        if not 0 <= fee.amount_vnd <= MAX_AMOUNT_VND:
            return None
        name = fee.name  # pydantic strips whitespace (Python's `strip` takes all it takes, and more) before the length
        if name is not None and (len(name) > FEE_NAME_MAX or name != name.strip() or not is_normalized("NFC", name)):
            return None
    received, due, ended = _time(d.received_at), _time(d.due_at), _time(d.ended_at)
    needs_received, needs_due, needs_ended = _NEEDS[d.status]
    if (needs_received and received is None) or (needs_due and due is None) or (needs_ended and ended is None):
        return None
    if received is not None and ((ended is not None and ended < received) or (due is not None and due < received)):
        return None
    timeliness = timeliness_of(ended, due) if d.status in _COMPLETED else None
    return Facts(d.dossier_code, d.channel, d.status, received, due, ended, d.fees, d.paid_online, d.digitised,
                 timeliness)
