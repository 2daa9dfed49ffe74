"""What a dead letter is found by without the raw topics (ADR 0038): the names `trace` matches, read from its record.

Pure, and called for dead letters only (rare): an accepted record never comes here. From the
record as intake reads it (binary mode: the `ce_*` headers; structured: the JSON's members; the
portal's shape: `MaHoSo` and the id intake derives from the payload and its commune), it takes the
event id, the subject, the dossier code of the data and the trace id intake gives the event (its
valid traceparent's, else the one derived from source and id), each only in the closed shape of
`schemas.lookup`, which no name, CCCD, phone, e-mail, address, control or bidirectional
character passes. A derived trace id is kept only when the source and the id it hashes identify
nobody (an unkeyed hash of a citizen's number can be reversed by trying every number, ADR 0026),
a producer's own only when no number a CCCD or phone could be is in it.
Never raises: a record it cannot read gets no lookup names, and is still dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from schemas import trace, wire
from schemas.admin import commune_provinces
from schemas.events import Family
from schemas.lookup import identifies_nobody, lookup_id, lookup_name
from services.intake import portal
from services.privacy.deadletters import MAX_INSPECTED_BYTES

Headers = Sequence[tuple[str, bytes | None]]


def lookup_names(family: Family, value: bytes | None, headers: Headers) -> dict[str, str]:
    """The `DeadLetterContext.lookup_*` fields of a dead letter of this record (those it could read)."""
    try:
        return _names(family, value, headers)
    except Exception:  # a record no reader foresaw: no names, never a worker stopped at a dead letter
        return {}


def _names(family: Family, value: bytes | None, headers: Headers) -> dict[str, str]:
    h = {k: v for k, v in headers if isinstance(v, bytes)}  # of repeated headers the last, as intake reads them
    obj = _parsed(value)
    if any(name == "ce_specversion" for name, _ in headers):  # `wire.is_binary_mode`, null values too
        event_id, source, subject, parent = (_header(h, f"ce_{name}") for name in (
            "id", "source", "subject", "traceparent"))
        names = _producers(event_id, source, subject, parent, obj)
    elif not isinstance(obj, dict):
        return {}
    elif family is Family.DOSSIER and portal.is_portal_shape(obj):
        names = _portal(obj, h, trace.sent_in(headers))
    else:  # a structured event without the attribute takes the headers' (`normalise._traced`)
        own = obj.get("traceparent")
        names = _producers(obj.get("id"), obj.get("source"), obj.get("subject"),
                           own if "traceparent" in obj else trace.sent_in(headers), obj.get("data"))
    if names.get("lookup_dossier") == names.get("lookup_subject"):
        names["lookup_dossier"] = None
    return {k: v for k, v in names.items() if v is not None}


def _producers(event_id: Any, source: Any, subject: Any, parent: Any, data: Any) -> dict[str, str | None]:
    """The names a producer chose (CloudEvents attributes, the data's dossier code), as intake would read them."""
    return {"lookup_id": lookup_name(event_id), "lookup_subject": lookup_name(subject),
            "lookup_dossier": lookup_name(data.get("dossier_code") if isinstance(data, dict) else None),
            "lookup_trace": _trace_id(event_id, source, parent)}


def _portal(obj: dict[str, Any], headers: dict[str, bytes], sent: str | None) -> dict[str, str | None]:
    """`MaHoSo`; with a known commune, the id intake derives (a hash of the whole payload: kept as it is) and its
    trace: the sender's (`sent`, from a header), else derived from the `source` header or the commune's portal
    sync."""
    names: dict[str, str | None] = {"lookup_subject": lookup_name(obj.get("MaHoSo"))}
    if sent is not None:
        names["lookup_trace"] = _trace_id(None, None, sent)
    commune = portal.commune_code(headers.get(portal.COMMUNE_HEADER))
    if commune in commune_provinces():
        derived = portal.event_id(commune, obj)
        source = headers.get(portal.SOURCE_HEADER)
        names["lookup_id"] = lookup_id(derived)
        if sent is None:  # the event's trace is the sender's when it sent one, whether or not it may be shown
            names["lookup_trace"] = _derived_trace(
                derived, portal.sync_source(commune) if source is None else wire.lenient_text(source))
    return names


def _trace_id(event_id: Any, source: Any, parent: Any) -> str | None:
    """The trace id intake gives the event (`schemas.envelope.Event`), when nothing personal can be in it."""
    if isinstance(parent, str) and trace.is_valid(parent.strip()):
        own = parent.strip()[3:35]
        return own if identifies_nobody(own) else None
    if not (isinstance(event_id, str) and isinstance(source, str)) or lookup_name(event_id) is None:
        return None
    return _derived_trace(event_id.strip(), source)


def _derived_trace(event_id: str, source: str) -> str | None:
    """`schemas.trace.derive`'s trace id, for an id that identifies nobody (or a hash) and such a source."""
    source = source.strip()
    if len(source) > 256 or not identifies_nobody(source):
        return None
    return trace.trace_id(trace.derive(source, event_id))


def _header(headers: dict[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return value.decode("utf-8", "replace") if value is not None and len(value) <= 1024 else None


def _parsed(value: bytes | None) -> Any:
    if value is None or len(value) > MAX_INSPECTED_BYTES:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
