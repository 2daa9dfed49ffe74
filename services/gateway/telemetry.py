"""The gateway's own metrics on its `/metrics` (labels are small enums: never a source, commune or event id)."""

from __future__ import annotations

from prometheus_client import Counter

ANSWERS = Counter("commune_gateway_answers_total", "Answers to POST /v1/events, by HTTP status", ["status"])
EVENTS = Counter("commune_gateway_events_total", "Events published to the raw topics", ["family"])
REFUSED = Counter("commune_gateway_refused_total", "Requests refused before their body was checked, by reason "
                  "(too_large, unauthenticated, rate_limited, failed_signatures, unsupported_media_type)", ["reason"])
