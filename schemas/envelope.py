"""The CloudEvents 1.0 envelope every canonical event carries.

On Kafka the envelope travels in binary content mode: attributes as `ce_*`
headers, `data` as the JSON record value (see `schemas.wire`). The commune and
province codes are CloudEvents extension attributes (`ce_commune`, `ce_province`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from rfc3986_validator import validate_rfc3986

from schemas.admin import CommuneCode, ProvinceCode, commune_provinces
from schemas.limits import NO_CONTROL_CHARACTERS, SAFETY_LIMIT, identifier
from schemas.times import UtcDateTime
from schemas.trace import PATTERN as TRACEPARENT
from schemas.trace import SHAPE as TRACEPARENT_SHAPE
from schemas.trace import derive, has_zero_id

SPECVERSION: Final = "1.0"
TYPE_PREFIX = "vn.communebus."


class Model(BaseModel):
    """Base of every payload: unknown fields are errors, names are the wire names."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=False)


M = TypeVar("M", bound=Model)


def built(cls: type[M], fields_set: Iterable[str], values: dict[str, Any]) -> M:
    """`cls.model_construct(**values)` for a `values` that names every field of `cls`: built, not validated.

    Only for values that are ours and right by construction (sealing, on every dossier event): pydantic's
    `model_construct` fills defaults field by field and `model_copy` copies through `copy.copy`, together a
    third of what sealing an applicant costs. `values` is kept (not copied). A test holds both equal.
    """
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields_set))
    object.__setattr__(model, "__pydantic_extra__", None)  # `extra="forbid"`: a Model has no extra members
    object.__setattr__(model, "__pydantic_private__", None)  # and no private attributes
    return model


def replaced(model: M, **changes: Any) -> M:
    """`model.model_copy(update=changes)` (a shallow copy, not validated) by `built`."""
    return built(type(model), model.model_fields_set | changes.keys(), {**model.__dict__, **changes})


@lru_cache(maxsize=4096)
def is_uri_reference(text: str) -> bool:
    """`text` is a URI-reference (RFC 3986), as CloudEvents requires of `source`. Checked where events are written
    (intake, the gateway), not where read: Java's CloudEvents SDK throws reading a record whose source is not one
    (`new URI(...)`: `/communes/02269/mobile team app`), which stops a Kafka consumer at that record. Sources
    repeat: the answers are cached."""
    return bool(text) and validate_rfc3986(text, rule="URI_reference") is not None


class Event(Model):
    specversion: Literal["1.0"] = SPECVERSION
    id: str = identifier(min_length=1, max_length=128, description="Unique per source; a repeated id is published once")
    source: str = Field(min_length=1, max_length=256, pattern=NO_CONTROL_CHARACTERS,
                        json_schema_extra={SAFETY_LIMIT: True, "format": "uri-reference"},
                        description="URI-reference (RFC 3986) of the sending system: spaces and characters beyond "
                        "ASCII percent-encoded. Intake refuses any other; readers take what they find")
    type: str
    time: UtcDateTime
    subject: str = identifier(
        min_length=1, max_length=128, description="The entity: dossier code, visit id, announcement id")
    datacontenttype: Literal["application/json"] = "application/json"
    commune: CommuneCode
    province: ProvinceCode
    traceparent: str | None = Field(
        default=None, pattern=TRACEPARENT,
        description="W3C trace context (CloudEvents distributed-tracing extension): one trace id from the gateway "
        "through intake to notify; derived from source and id when the record has none, one that does not parse, or "
        "one whose trace id or parent id is all zeros (W3C: invalid, treated as absent)")
    data: Any

    @field_validator("traceparent", mode="before")
    @classmethod
    def _unparsable_trace_is_absent(cls, value: Any) -> Any:
        """A traceparent that does not parse (upper-case hex, another version, not text) is absent, as W3C Trace
        Context says a receiver treats it (a new trace is started: here, derived): it refused the whole event as
        `invalid_field traceparent` while both CloudEvents SDKs read it (CloudEvents audit)."""
        if value is None or (isinstance(value, str) and TRACEPARENT_SHAPE.fullmatch(value.strip())):
            return value
        return None

    @model_validator(mode="after")
    def _checked(self) -> Event:
        """The province is the commune's; every event has a valid trace: its own, or one derived from source and id
        (not counted as set by the input) when it has none or an all-zero one (W3C: invalid; as the gateway ignores
        such a header, the event is then as if sent without). One validator, not two: it runs for every event every
        service reads."""
        expected = commune_provinces()[self.commune]
        if self.province != expected:
            raise PydanticCustomError(
                "province_mismatch",
                "commune {commune} belongs to province {expected}, not {province}",
                {"field": "province", "commune": self.commune, "expected": expected, "province": self.province},
            )
        if self.traceparent is None or has_zero_id(self.traceparent):
            self.__dict__["traceparent"] = derive(self.source, self.id)
            self.model_fields_set.discard("traceparent")
        return self

    @property
    def key(self) -> str:
        """Partition key of every canonical topic: the commune.

        One commune's events share a partition, so one dossier's events stay in
        order and per-commune aggregation needs no repartition.
        """
        return self.commune
