"""Per-commune indicator snapshots on `commune.metrics.snapshots` (`schemas.topics.METRICS_SNAPSHOTS`).

For systems that do not scrape Prometheus: the metrics service publishes one
snapshot per commune it owns every interval, CloudEvents binary mode like the
canonical topics, key = commune. Each snapshot is the commune's complete
current figures (not a delta), so a consumer needs only the newest per commune
(the topic is compacted by commune, the newest kept 7 days: a new reader loads it from the start as a
table). Aggregate figures only: no
personal data, no dossier codes.

Not listed in `schemas.events.EVENT_TYPES` (that registry lists the canonical
input events); decode with `decode_snapshot`.
"""

from __future__ import annotations

from typing import Final, Literal

import orjson
from pydantic import Field

from schemas.envelope import Event, Model
from schemas.times import UtcDateTime
from schemas.wire import ATTRIBUTES, Headers, attributes

COMMUNE_SNAPSHOT: Final = "vn.communebus.metrics.commune-snapshot.v1"

Count = Field(default=0, ge=0)
Rate = Field(default=None, ge=0, le=1, description="0-1; absent when the denominator is 0")


class CommuneIndicators(Model):
    taken_at: UtcDateTime = Field(description="When the figures were read")
    received: int = Count
    received_by_channel: dict[str, int] = Field(default_factory=dict, description="counter/online/postal/mobile_team")
    completed: int = Count
    completed_early: int = Count
    completed_on_time: int = Count
    completed_late: int = Count
    open: int = Count
    overdue: int = Count
    paid_online: int = Count
    with_fees: int = Count
    digitised: int = Count
    on_time_rate: float | None = Rate
    online_rate: float | None = Rate
    paid_online_rate: float | None = Rate
    digitised_rate: float | None = Rate
    mobile_team_visits: int = Count
    households_reached: int = Count
    people_assisted: int = Count
    dossiers_assisted: int = Count
    accounts_activated: int = Count
    announcements_scheduled: int = Count
    broadcasts_completed: int = Count
    broadcasts_failed: int = Count
    last_event_at: UtcDateTime | None = None


class CommuneSnapshot(Event):
    type: Literal["vn.communebus.metrics.commune-snapshot.v1"] = COMMUNE_SNAPSHOT
    data: CommuneIndicators


def decode_snapshot(headers: Headers, value: bytes) -> CommuneSnapshot:
    """One snapshot from a binary-mode record (as `schemas.wire.decode` does for canonical events)."""
    attrs = attributes(headers)
    envelope = orjson.dumps({k: attrs[k] for k in ATTRIBUTES if k in attrs})
    return CommuneSnapshot.model_validate_json(envelope[:-1] + b',"data":' + value + b"}")
