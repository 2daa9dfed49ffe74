"""The CloudEvents 1.0 envelope every canonical event carries.

On Kafka the envelope travels in binary content mode: attributes as `ce_*`
headers, `data` as the JSON record value (see `schemas.wire`). The commune and
province codes are CloudEvents extension attributes (`ce_commune`, `ce_province`).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.admin import CommuneCode, ProvinceCode, commune_provinces
from schemas.limits import identifier
from schemas.times import UtcDateTime
from schemas.trace import PATTERN as TRACEPARENT
from schemas.trace import derive

SPECVERSION: Final = "1.0"
TYPE_PREFIX = "vn.communebus."


class Model(BaseModel):
    """Base of every payload: unknown fields are errors, names are the wire names."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=False)


class Event(Model):
    specversion: Literal["1.0"] = SPECVERSION
    id: str = identifier(min_length=1, max_length=128, description="Unique per source; a repeated id is published once")
    source: str = identifier(min_length=1, max_length=256, description="URI-reference of the sending system")
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
        "through intake to notify; derived from source and id when the record has none")
    data: Any

    @model_validator(mode="after")
    def _checked(self) -> Event:
        """The province is the commune's; every event has a trace: its own, or one derived from source and id (not
        counted as set by the input). One validator, not two: it runs for every event every service reads."""
        expected = commune_provinces()[self.commune]
        if self.province != expected:
            raise PydanticCustomError(
                "province_mismatch",
                "commune {commune} belongs to province {expected}, not {province}",
                {"field": "province", "commune": self.commune, "expected": expected, "province": self.province},
            )
        if self.traceparent is None:
            self.__dict__["traceparent"] = derive(self.source, self.id)
        return self

    @property
    def key(self) -> str:
        """Partition key of every canonical topic: the commune.

        One commune's events share a partition, so one dossier's events stay in
        order and per-commune aggregation needs no repartition.
        """
        return self.commune
