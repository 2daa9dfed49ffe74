"""The runtime's own metrics, the same in every service (label `service`, small enums only;
`topic` names a registry topic)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TASK_FAILURES = Counter("commune_task_failures_total", "Supervised tasks that ended with an error",
                        ["service", "task"])
RESTARTS = Counter("commune_service_restarts_total", "Worker restarts after a Kafka error while a broker answered",
                   ["service", "error"])
OUTAGE_RESTARTS = Counter("commune_service_outage_restarts_total",
                          "Worker restarts after a Kafka error while no broker answered (an outage, not a crash loop)",
                          ["service", "error"])
READY = Gauge("commune_service_ready", "1 while the service is assigned, restored and consuming", ["service"])
LAST_COMMIT = Gauge("commune_last_commit_timestamp_seconds", "When the service last committed its progress",
                    ["service"])
TOPIC_CONFIG_DRIFT = Gauge("commune_topic_config_drift",
                           "Registry config keys an existing topic held other values of when the service last "
                           "checked it (0: as schemas/topics.py says; `commune-bus topics create` mends them)",
                           ["topic"])
CERTIFICATE_EXPIRY = Gauge("commune_tls_certificate_expiry_timestamp_seconds",
                           "The earliest notAfter among the certificates of a PEM file the service loads (`file`: its "
                           "role, kafka_ca, kafka_client or gateway; never its path or subject), read at every run's "
                           "start and hourly", ["service", "file"])
CERTIFICATE_UNREADABLE = Counter("commune_tls_certificate_unreadable_total",
                                 "Reads of a PEM file the service loads that found no certificate (missing, not "
                                 "readable, not PEM); the expiry gauge keeps the last value read", ["service", "file"])
