"""The gateway's own metrics on its `/metrics` (labels are small enums: never a source, commune or event id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ANSWERS = Counter("commune_gateway_answers_total", "Answers to POST /v1/events, by HTTP status", ["status"])
EVENTS = Counter("commune_gateway_events_total", "Events published to the raw topics", ["family"])
REFUSED = Counter("commune_gateway_refused_total", "Requests refused before their body was checked, by reason "
                  "(too_large, unauthenticated, rate_limited, failed_signatures, unsupported_media_type, bad_framing: "
                  "Content-Length and Transfer-Encoding both, on any path; unverified_bytes: signed bodies being read "
                  "unverified, from all addresses, at GATEWAY_UNVERIFIED_BODY_BYTES; held_bytes: bodies read or "
                  "waiting for their check at GATEWAY_HELD_BODY_BYTES, or a source's at "
                  "GATEWAY_HELD_BODY_BYTES_PER_SOURCE; no_disk_room: a body's spool refused by a full disk)",
                  ["reason"])
CONNECTIONS_OPEN = Gauge("commune_gateway_connections_open", "HTTP connections open now, TLS handshakes "
                         "under way included (GATEWAY_MAX_CONNECTIONS)")
CONNECTIONS_CLOSED = Counter("commune_gateway_connections_closed_total", "HTTP connections the gateway closed on a "
                             "slow or excess client, by reason (header_timeout, handshake_timeout, body_too_slow, "
                             "send_too_slow, too_many_connections, evicted)",
                             ["reason"])
UNREAD_CLOSED = Counter("commune_gateway_unread_bodies_closed_total", "Answers given before their request's body "
                        "ended, whose connection was closed rather than the body drained (services.gateway.unread)")
INTERNAL_ERRORS = Counter("commune_gateway_internal_errors_total", "Requests whose route raised an unexpected "
                          "exception (a bug), answered 500 internal_error; log gateway.internal_error")
ANSWERS_UNSENT = Counter("commune_gateway_answers_unsent_total", "Answers a route could not send: uvicorn had already "
                         "answered the request 400 as malformed (a bad chunk), or the connection was gone; not a bug "
                         "(a route's answer h11 refuses as malformed would count here too: GATEWAY_LOG_LEVEL=DEBUG "
                         "logs gateway.answer_unsent with its type and place)")
TRACES = Counter("commune_gateway_traces_total", "GET /v1/trace/{query} calls past the operator key, by outcome "
                 "(found, not_found, busy, overdue, broker_unavailable)", ["outcome"])
OPERATOR_KEYS_REFUSED = Counter("commune_gateway_operator_keys_refused_total", "Calls to the operators' endpoints "
                                "refused for a missing or wrong X-Operator-Key, by endpoint and key (missing, wrong)",
                                ["endpoint", "key"])
