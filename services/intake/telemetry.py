"""intake's Prometheus metrics. Labels are topics, families and reason codes only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("commune_intake_records_in_total", "Raw records consumed", ["family"])
RECORDS_OUT = Counter("commune_intake_records_out_total", "Canonical events published", ["family"])
REJECTED = Counter("commune_intake_records_rejected_total", "Records dead-lettered", ["family", "reason"])
LATENCY = Histogram(
    "commune_intake_processing_seconds",
    "Raw record timestamp to transaction commit",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSACTION = Histogram(
    "commune_intake_transaction_seconds",
    "One transaction: sending what was validated for it, its offsets and the commit",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH = Histogram("commune_intake_batch_records", "Records per transaction",
                  buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000))
DEDUP_IDS = Gauge("commune_intake_dedup_ids", "Event ids remembered for de-duplication")
REROUTED = Counter("commune_intake_records_rerouted_total",
                   "Raw records moved to their commune's raw partition (a producer that did not key by commune)",
                   ["family"])
FENCED = Counter("commune_intake_tasks_fenced_total",
                 "Transactions refused and aborted because this worker's partitions belong to another member now "
                 "(paused or evicted past its session timeout: KIP-447 generation check, or a newer producer)")
ABORTED = Counter("commune_intake_transactions_aborted_total", "Transactions aborted because a send failed")
TASKS = Gauge("commune_intake_tasks",
              "Raw partition numbers this worker owns: offsets stable, state restored, consuming")
CLOCK_AHEAD = Gauge("commune_intake_clock_ahead_seconds",
                    "This worker's clock minus the broker's append time of the newest raw record it last fetched: its "
                    "clock's offset from the broker's when caught up, more by its lag when behind (ADR 0043)")
RESTORE_SKIPPED = Counter("commune_intake_restore_skipped_total",
                          "De-duplication changelog records that could not be read back (skipped, logged "
                          "dedup.restore_skipped): the events they listed may be published again within the window")
