"""The functional core of intake: one raw record in, one canonical event or one rejection out (`outcome`).

No Kafka, no I/O, no clock: the worker, the HTTP gateway and the offline
`commune-bus validate` all call `normalise`. Rejections name the field and the
reason and never echo input values (they may be personal data). `normalise` never
raises: a bug met while validating one record rejects that record as `internal_error`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Union

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from schemas import limits, trace, wire
from schemas import portal as portal_shape
from schemas.admin import commune_provinces
from schemas.deadletter import Reason, internal_error
from schemas.dossier import DossierData, DossierStatusChanged, OpenedApplicant
from schemas.envelope import Event, is_uri_reference
from schemas.events import EVENT_TYPES, EVENTS_BY_FAMILY, FAMILY_OF_TYPE, Family
from schemas.personal import SealedApplicant
from services.intake import portal
from services.intake.outcome import Accepted, Outcome, Rejected, from_validation, reject
from services.privacy.applicant import seal_event
from services.privacy.keyring import Keyring

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024


def _parse_json(value: bytes) -> Any | Rejected:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return reject(Reason.NOT_UTF8, "(record)", f"record is not valid UTF-8 (byte {bad.start})")
        return reject(Reason.NOT_JSON, "(record)",
                      f"record is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")


def _shape(value: bytes, prefix: str) -> Rejected | None:
    """A record nesting past `limits.MAX_DEPTH` or with an array past `limits.MAX_ITEMS`, refused before validation.

    Almost every record passes the byte count of `limits.may_exceed`; only the rest are parsed and walked.
    """
    if not limits.may_exceed(value):
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if "depth" in exc.msg or "recursion" in exc.msg:
            return reject(Reason.TOO_DEEP, "(record)", f"(record): nests deeper than {limits.MAX_DEPTH} levels")
        return None  # the general path names what is wrong
    try:
        limits.check_shape(obj)
    except limits.ShapeError as exc:
        field = f"{prefix}.{exc.field}" if prefix and exc.field != "(record)" else exc.field
        reason = Reason.TOO_DEEP if exc.too_deep else Reason.TOO_LARGE
        return reject(reason, field, f"{field}: {exc.limit}")
    return None


def _family_check(event_type: str, family: Family) -> Rejected | None:
    if event_type not in EVENT_TYPES:
        known = ", ".join(sorted(t for t, f in FAMILY_OF_TYPE.items() if f is family))
        return reject(Reason.UNKNOWN_EVENT_TYPE, "type",
                      f"type: not a known event type; this topic takes {known}")
    if FAMILY_OF_TYPE[event_type] is not family:
        return reject(Reason.WRONG_FAMILY, "type",
                      f"type: a {FAMILY_OF_TYPE[event_type]} event sent to the {family} topic")
    return None


def _adapter(models: tuple[type[Event], ...]) -> TypeAdapter[Event]:
    if len(models) == 1:
        return TypeAdapter(models[0])
    # a union built at run time is no static type: mypy cannot check it as a `TypeForm[Event]`
    union: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 (a runtime tuple)
    adapter: TypeAdapter[Event] = TypeAdapter(union)
    return adapter


_STRUCTURED: dict[Family, TypeAdapter[Event]] = {f: _adapter(ms) for f, ms in EVENTS_BY_FAMILY.items()}


def _structured_fast(value: bytes, family: Family) -> Event | None:
    """A valid structured CloudEvent of `family`, validated straight from its bytes (no dict in between).

    None means "take the general path": it names the reason of any problem exactly, so the fast path
    only needs to be right when it accepts. Without a `type` member the model default would be used,
    hence the `model_fields_set` check.
    """
    if b'"specversion"' not in value:
        return None
    try:
        event = _STRUCTURED[family].validate_json(value)
    except ValidationError:
        return None
    return event if "type" in event.model_fields_set else None


PORTAL_CODE: Final = portal_shape.FIELD_NAMES["dossier_code"]
PASSED_OVER: Final = frozenset({"partitionkey", "dataschema", "tracestate"})
"""CloudEvents attributes a structured record may carry that the canonical event does not (the binary path passes
over any `ce_*` header it does not know, as these): the SDKs' Kafka key mapper writes `partitionkey` (the canonical
record is keyed by its commune), `dataschema` names the producer's schema (the canonical one is ours), `tracestate`
goes with a trace intake replaces. They refused the whole event as `unknown_field` (CloudEvents audit)."""
JSON_MEDIA_TYPE = re.compile(r"application/json\s*(?:;\s*charset\s*=\s*\"?utf-8\"?\s*)?", re.IGNORECASE)
"""`datacontenttype` values that say JSON in UTF-8 (RFC 8259's only encoding): `application/json` with or without
`charset=utf-8`, as the SDKs and HTTP clients write it."""


def _structured(obj: dict[str, Any], family: Family) -> Outcome:
    event_type = obj.get("type")
    if not isinstance(event_type, str):
        # a portal dossier sent as another family (`?family=mobile-team`, its topic): say what it is (walkthrough)
        hint = (f"; this record has the portal's dossier shape ({PORTAL_CODE}), which only the dossier family "
                f"takes, not {family.value}: send it as a dossier") if portal.is_portal_shape(obj) else ""
        return reject(Reason.MISSING_FIELD, "type", f"type: a CloudEvents `type` string is required{hint}")
    if bad := _family_check(event_type, family):
        return bad
    if not PASSED_OVER.isdisjoint(obj):
        obj = {k: v for k, v in obj.items() if k not in PASSED_OVER}
    media = obj.get("datacontenttype")
    if isinstance(media, str) and media != "application/json" and JSON_MEDIA_TYPE.fullmatch(media.strip()):
        obj = {**obj, "datacontenttype": "application/json"}
    try:
        return Accepted(EVENT_TYPES[event_type].model_validate(obj))
    except ValidationError as exc:
        return from_validation(exc)


def _binary(headers: Sequence[tuple[str, bytes]], value: bytes, family: Family) -> Outcome:
    try:
        attrs = wire.attributes(headers)
    except UnicodeDecodeError:
        return reject(Reason.NOT_UTF8, "ce_*", "a ce_* header is not valid UTF-8")
    except wire.InvalidRecord as exc:  # a ce_* header without a value
        return reject(exc.reason, exc.field, exc.message)
    if bad := _family_check(attrs.get("type", ""), family):
        return bad
    try:
        event = EVENT_TYPES[attrs["type"]].model_validate_json(wire.structured_json(attrs, value))
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            parsed = _parse_json(value)
            if isinstance(parsed, Rejected):
                return parsed
        return from_validation(exc)
    if (problem := wire.binary_problem(event, attrs, value)) is not None:
        return reject(problem.reason, problem.field, problem.message)
    return Accepted(event)


def _portal(obj: dict[str, Any], headers: Sequence[tuple[str, bytes]]) -> Outcome:
    h = dict(headers)
    raw_commune = h.get(portal.COMMUNE_HEADER)
    if raw_commune is None:
        return reject(
            Reason.MISSING_COMMUNE_HEADER, portal.COMMUNE_HEADER,
            f"{portal.COMMUNE_HEADER}: the portal dossier shape does not carry its commune: give it as the "
            f"`{portal.COMMUNE_HEADER}` record header (Kafka), X-Commune-Code or ?commune= (gateway), --commune (CLI)",
        )
    commune = portal.commune_code(raw_commune)
    if commune not in commune_provinces():
        return reject(Reason.UNKNOWN_COMMUNE, portal.COMMUNE_HEADER,  # the header's text is not repeated: any bytes
                      f"{portal.COMMUNE_HEADER}: not a commune code of the official list")
    try:
        data = DossierData.model_validate(portal.to_canonical_data(obj))
    except ValidationError as exc:
        return from_validation(exc, lambda loc: portal.portal_field(("data", *loc), obj))
    raw_source = h.get(portal.SOURCE_HEADER)  # absent or without a value (a null header): the commune's portal sync
    source = portal.sync_source(commune) if raw_source is None else wire.lenient_text(raw_source)
    fields = portal.envelope(commune, source, obj, data)
    if (sent := trace.sent_in(headers)) is not None:  # the sender's trace (one not valid is absent: derived)
        fields["traceparent"] = sent
    if fields["time"] is None:
        return reject(Reason.MISSING_FIELD, "NgayNopHoSo", "NgayNopHoSo: the payload has no date to time the event by")
    try:
        return Accepted(DossierStatusChanged.model_validate(
            {**fields, "province": commune_provinces()[commune], "data": data}))
    except ValidationError as exc:
        return from_validation(exc)


SOURCE_RULE = ("source: not a URI-reference (RFC 3986), as CloudEvents requires: percent-encode spaces and "
               "characters beyond ASCII (a CloudEvents reader in Java throws on such a record)")


def normalise(
    family: Family, value: bytes | None, headers: Sequence[tuple[str, bytes]] = (),
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES, keyring: Keyring | None = None,
) -> Outcome:
    """Validate and normalise one raw record of `family`: canonical event, or the reason it is rejected.

    With a `keyring`, an accepted dossier event comes out sealed (`seal`); without one (the gateway,
    `commune-bus validate`) it keeps the clear applicant of the raw topic. Never raises: an unexpected
    exception is this record's `internal_error` rejection (type and file:line).
    """
    try:
        outcome = _normalise(family, value, headers, max_bytes)
        if isinstance(outcome, Accepted) and _presealed(outcome.event):
            return reject(Reason.INVALID_FIELD, "data.applicant",
                          "data.applicant: send the applicant in clear on the raw topic; only intake seals it")
        if isinstance(outcome, Accepted) and _opened(outcome.event):  # as before the webhooks' form was published
            return reject(Reason.UNKNOWN_FIELD, "data.applicant.subject",
                          "data.applicant.subject: intake derives the subject; send the applicant without it")
        if isinstance(outcome, Accepted) and not is_uri_reference(outcome.event.source):
            return reject(Reason.INVALID_FIELD, "source", SOURCE_RULE)
        return outcome if keyring is None else seal(outcome, keyring)
    except Exception as exc:  # one record's bug must not stop the stream: it is dead-lettered
        problem = internal_error(exc)
        return Rejected(problem, (problem,))


def _presealed(event: Event) -> bool:
    return isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)


def _opened(event: Event) -> bool:
    """The applicant as webhooks carry it (`OpenedApplicant`): never on a raw topic, so never on a canonical one."""
    return isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, OpenedApplicant)


def seal(outcome: Outcome, keyring: Keyring) -> Outcome:
    """An accepted event as the canonical topic carries it (`seal_accepted`); a rejection as it is."""
    return seal_accepted(outcome, keyring) if isinstance(outcome, Accepted) else outcome


def seal_accepted(accepted: Accepted, keyring: Keyring, written_at: datetime | None = None) -> Accepted:
    """The event with its applicant sealed, and the new key records to write in the same transaction; `written_at`:
    when its raw record was written (`Keyring.key_for`)."""
    event, keys = seal_event(keyring, accepted.event, written_at)
    return Accepted(event, tuple(keys))


UNDECODED: Final = "\ufffd"
HEADER_NAME_RULE: Final = ("(headers): a header name is not valid UTF-8 (its bad bytes read as U+FFFD, in Kafka's "
                           "readers as in this dead letter), or holds U+FFFD: write header names in UTF-8")
"""A record whose producer wrote a header name that is not UTF-8 (a raw topic takes any bytes: ADR 0050) is
dead-lettered; the name reads with U+FFFD (`services.common.header_names`), so a replay of its dead letter is too."""


def _normalise(family: Family, value: bytes | None, headers: Sequence[tuple[str, bytes]], max_bytes: int) -> Outcome:
    for name, _ in headers:  # a loop, not `any` over a generator: 0.4 µs less a record (review)
        if UNDECODED in name:
            return reject(Reason.NOT_UTF8, "(headers)", HEADER_NAME_RULE)
    if value is None:
        return reject(Reason.NOT_JSON, "(record)", "record has no value (tombstone)")
    if len(value) > max_bytes:
        return reject(Reason.PAYLOAD_TOO_LARGE, "(record)", f"record is {len(value)} bytes; the limit is {max_bytes}")
    binary = wire.is_binary_mode(headers)
    if bad := _shape(value, "data" if binary else ""):
        return bad
    if binary:
        return _binary(headers, value, family)
    if (event := _structured_fast(value, family)) is not None:
        return _traced(Accepted(event), headers)
    obj = _parse_json(value)
    if isinstance(obj, Rejected):
        return obj
    if not isinstance(obj, dict):
        return reject(Reason.NOT_AN_OBJECT, "(record)", f"record is a JSON {type(obj).__name__}, not an object")
    if family is Family.DOSSIER and portal.is_portal_shape(obj):
        return _portal(obj, headers)
    if "specversion" not in obj and any(k[:3] == wire.CE_PREFIX for k, _ in headers):  # binary mode, half-made
        return reject(Reason.MISSING_FIELD, "ce_specversion",
                      "ce_specversion: ce_* headers without it are no CloudEvents binary-mode record; add "
                      "ce_specversion: 1.0")
    return _traced(_structured(obj, family), headers)


def _traced(outcome: Outcome, headers: Sequence[tuple[str, bytes]]) -> Outcome:
    """A structured event without a `traceparent` attribute takes the sender's trace from a record header
    (`trace.sent_in`), as a binary-mode record's `ce_traceparent` is its attribute: it was left for the derived one,
    which `trace` of the header's id did not find (a dead letter's lookup trace, ADR 0038, met it)."""
    if not headers or not isinstance(outcome, Accepted) or "traceparent" in outcome.event.model_fields_set:
        return outcome
    sent = trace.sent_in(headers)
    return outcome if sent is None else Accepted(outcome.event.model_copy(update={"traceparent": sent}), outcome.keys)
