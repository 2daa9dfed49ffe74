"""The metrics worker's own health metrics (prometheus-client default registry). Labels: small enums only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("commune_metrics_events_total", "Canonical events consumed, by family and outcome "
                 "(applied = changed a state, unchanged = duplicate or stale, invalid = undecodable, "
                 "failed = met a bug, skipped = refused by a state's bound: a broadcast past its announcement's "
                 "cluster cap)",
                 ["family", "outcome"])
OWNED = Gauge("commune_metrics_owned_partitions", "Canonical partitions this worker owns and exports")
RESTORED = Counter("commune_metrics_restored_records_total", "Changelog records replayed on partition assignment")
SNAPSHOTS = Counter("commune_metrics_snapshots_total", "Per-commune snapshot events published")
BATCH_SECONDS = Histogram("commune_metrics_batch_seconds", "Time to apply a batch and flush its changelog",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SNAPSHOT_FAILURES = Counter("commune_metrics_snapshot_failures_total",
                            "Snapshot rounds given up after a Kafka error (retried at the next interval), and "
                            "communes whose figures made no valid snapshot (skipped, logged metrics.snapshot_invalid)")
RESTORE_SKIPPED = Counter("commune_metrics_restore_skipped_total",
                          "Changelog records that could not be read back into a state (skipped, logged)")
