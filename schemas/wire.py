"""CloudEvents Kafka protocol binding, binary content mode.

Attributes travel as `ce_<name>` headers (UTF-8), `content-type` carries the
data content type, the record value is the JSON `data`, the key is the commune.
Decoding validates the whole event in one pydantic call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from schemas.envelope import Event
from schemas.events import EVENT_TYPES

Headers = Sequence[tuple[str, bytes]]
CE_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
_JSON = b"application/json"
ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "commune", "province")


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class UnknownEventType(ValueError):
    """The `ce_type` names no canonical event type."""


def rfc3339(event: Event) -> str:
    return event.time.isoformat().replace("+00:00", "Z")


def encode(event: Event) -> KafkaRecord:
    data = event.data
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_time", rfc3339(event).encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_commune", event.commune.encode()),
        ("ce_province", event.province.encode()),
        (CONTENT_TYPE, _JSON),
    ]
    # the serializer straight to bytes: `model_dump_json` would build a str to be encoded again
    return KafkaRecord(event.key.encode(), data.__pydantic_serializer__.to_json(data, exclude_none=True), headers)


def attributes(headers: Headers) -> dict[str, str]:
    """The CloudEvents attributes found in `ce_*` headers."""
    return {k[3:]: v.decode("utf-8") for k, v in headers if k[:3] == CE_PREFIX}


def is_binary_mode(headers: Headers) -> bool:
    return any(k == "ce_specversion" for k, _ in headers)


def decode(headers: Headers, value: bytes, attrs: dict[str, str] | None = None) -> Event:
    """One canonical event from a binary-mode record; raises pydantic's ValidationError or UnknownEventType.

    `attrs`: the record's `attributes(headers)` when the caller has them already.
    """
    if attrs is None:
        attrs = attributes(headers)
    model = EVENT_TYPES.get(attrs.get("type", ""))
    if model is None:
        raise UnknownEventType(attrs.get("type", ""))
    envelope = orjson.dumps({k: attrs[k] for k in ATTRIBUTES if k in attrs})
    return model.model_validate_json(envelope[:-1] + b',"data":' + value + b"}")
