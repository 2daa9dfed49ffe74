"""The pure part of a request: body -> records -> events or one precise error per bad record.

Shared by the gateway and `commune-bus validate`. Validation itself is intake's
`normalise`; this module only splits bodies, picks each record's family and
applies the source registry. Messages never echo input values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.deadletter import Reason, Rejection
from schemas.envelope import Event
from schemas.events import FAMILY_OF_TYPE, Family
from schemas.limits import MAX_DEPTH
from services.intake import portal
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.sources.registry import Source, SourceRegistry, is_allowed

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
JSON_SEQ = "application/json-seq"
JSON_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json")
READABLE = (*JSON_TYPES, *NDJSON_TYPES, JSON_SEQ)
"""The media types a body may be sent as (also `application/*+json`); a request without Content-Type is JSON."""


def media_type_problem(headers: Mapping[str, str]) -> str | None:
    """Why a body sent with these headers' Content-Type and Content-Encoding cannot be read (the gateway's 415), or
    None. JSON is UTF-8 (RFC 8259): another charset is refused rather than misread. A content coding other than
    `identity` is refused (RFC 9110 15.5.16): the gateway inflates nothing, and took a deflated body for the text it
    was (202) or answered a gzipped one as not UTF-8 (protocol audit). The headers' values are never echoed."""
    coding = headers.get("content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        return "the body is read as sent, with no content coding: send it without Content-Encoding"
    content_type = headers.get("content-type")
    if content_type is None:
        return None
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media not in READABLE and not (media.startswith("application/") and media.endswith("+json")):
        return "the Content-Type is not one the gateway reads: send " + ", ".join(READABLE)
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "JSON is read as UTF-8 only: send the body in UTF-8, with charset=utf-8 or none"
    return None


class RecordError(BaseModel, frozen=True):
    """One problem with one record of a request or file."""

    index: int
    field: str
    reason: str
    message: str


class BodyError(Exception):
    """The body as a whole cannot be read (not JSON, empty, too many records)."""


class TooManyRecords(BodyError):
    """The body holds more than `limit` records (the CLI says it of a file, with what to do)."""

    def __init__(self, limit: int, count: int | None = None) -> None:
        held = f"more than {limit}" if count is None else str(count)
        super().__init__(f"body holds {held} records; the limit is {limit} per request")
        self.limit = limit


def split_body(body: bytes, content_type: str = "application/json", max_records: int = 100_000) -> list[bytes]:
    """One record per element: a JSON object, a JSON array of objects, or NDJSON (one object a line).

    The record limit comes before any work per record: an array is counted once parsed, lines and sequences are
    split lazily and never past `max_records` + 1, so a body of many tiny records costs memory in proportion to
    the body (its parse) or to the limit, never a re-serialised copy of each element."""
    media = content_type.split(";")[0].strip().lower()
    if media == JSON_SEQ:  # RFC 7464: each record after a record separator (0x1E), line breaks optional
        return _some(_split(_SEQ_RECORD, body, max_records))
    if media in NDJSON_TYPES:
        return _some(_split(_LINE, body, max_records))
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        lines = _split(_LINE, body, max_records, lambda line: line.startswith(b"{"))
        if lines is not None and len(lines) > 1:
            return lines  # NDJSON sent as application/json: accept it, it is unambiguous
        # one document (pretty-printed, say) with a syntax error: said as such, not as N bad lines
        raise BodyError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(parsed, list):
        return [body]
    if len(parsed) > max_records:
        raise TooManyRecords(max_records, len(parsed))
    return _some(_elements(parsed))


def _elements(parsed: list[Any]) -> list[bytes]:
    """Each element of a JSON array body as its own record; one nesting past what a record may is refused."""
    try:
        return [orjson.dumps(r) for r in parsed]
    except orjson.JSONEncodeError:
        raise BodyError(f"a record nests deeper than {MAX_DEPTH} levels") from None


_LINE = re.compile(rb"[^\s][^\r\n]*")
"""A non-blank line from its first non-blank byte: the lines of `bytes.splitlines`, blank ones skipped."""
_SEQ_RECORD = re.compile(rb"[^\s\x1e][^\x1e]*")
"""A non-blank record of a JSON text sequence, from its first non-blank byte to the next separator."""


def _split(pattern: re.Pattern[bytes], body: bytes, max_records: int,
           wanted: Callable[[bytes], bool] = lambda _: True) -> list[bytes] | None:
    """The records `pattern` finds, stripped, split lazily: BodyError at the first one past `max_records`,
    None at the first one `wanted` refuses."""
    records: list[bytes] = []
    for match in pattern.finditer(body):
        record = match[0].rstrip()
        if not wanted(record):
            return None
        if len(records) == max_records:
            raise TooManyRecords(max_records)
        records.append(record)
    return records


def _some(records: list[bytes] | None) -> list[bytes]:
    if not records:
        raise BodyError("body holds no records")
    return records


def family_of(record: bytes, default: Family | None) -> Family:
    """The family a record claims: explicit default, else its CloudEvents type, else dossier (portal shape)."""
    if default is not None:
        return default
    try:
        obj: Any = orjson.loads(record)
    except orjson.JSONDecodeError:
        return Family.DOSSIER
    event_type = obj.get("type") if isinstance(obj, dict) else None
    return FAMILY_OF_TYPE.get(event_type, Family.DOSSIER) if isinstance(event_type, str) else Family.DOSSIER


MAX_ERRORS = 1000
"""Problems listed in one answer (each record lists at most `outcome.MAX_PROBLEMS`); the rest are counted."""


@dataclass(frozen=True)
class Checked:
    events: list[tuple[Family, Event]]
    errors: list[RecordError]
    rejected: int = 0
    """Records refused (their problems may be past `MAX_ERRORS`, unlisted)."""
    omitted: int = 0
    """Problems past `MAX_ERRORS`, not listed."""
    unauthorised: bool = False
    indices: list[int] = field(default_factory=list)
    """The index in `records` of each of `events`."""


def check(records: list[bytes], *, family: Family | None = None, commune: str | None = None,
          caller: Source | None = None, max_bytes: int = 1024 * 1024, max_errors: int = MAX_ERRORS) -> Checked:
    """Validate every record; with a caller, also the registry rules for that caller's entry. The first
    `max_errors` problems are listed, the others counted (`Checked.omitted`)."""
    events: list[tuple[Family, Event]] = []
    indices: list[int] = []
    errors: list[RecordError] = []
    rejected = omitted = 0
    unauthorised = False

    def refuse(index: int, problems: list[Rejection]) -> None:
        nonlocal rejected, omitted, unauthorised
        rejected += 1
        unauthorised |= any(p.reason is Reason.UNAUTHORISED_SOURCE for p in problems)
        room = max(0, max_errors - len(errors))
        errors.extend(RecordError(index=index, field=p.field, reason=p.reason.value, message=p.message)
                      for p in problems[:room])
        omitted += max(0, len(problems) - room)

    headers = [(portal.COMMUNE_HEADER, commune.encode())] if commune else []
    if caller is not None:
        headers.append((portal.SOURCE_HEADER, caller.canonical_source.encode()))
    own = SourceRegistry(sources=(caller,)) if caller is not None else None
    for index, record in enumerate(records):
        fam = family_of(record, family)
        outcome = normalise(fam, record, headers, max_bytes)
        if not isinstance(outcome, Accepted):
            refuse(index, list(outcome.problems))
            continue
        event = outcome.event
        if own is not None and (denied := is_allowed(own, event.source, fam, event.commune)) is not None:
            refuse(index, [denied])
            continue
        events.append((fam, event))
        indices.append(index)
    return Checked(events, errors, rejected, omitted, unauthorised, indices)
