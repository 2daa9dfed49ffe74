"""Prometheus metrics. Labels are codes only (type, channel, outcome, lane) or a webhook subscriber's name from the
operator's registry (`subscribers.Subscriber.name`: a system's identifier), never personal data, never a URL."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFICATIONS = Counter("notify_notifications_total", "Notification attempts by type, channel and outcome",
                        ["type", "channel", "outcome"])
LATENCY = Histogram("notify_delivery_latency_seconds", "From event time to provider success", ["lane"],
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 3600, 36000))
WEBHOOK_CALLS = Counter(
    "notify_webhook_calls_total",
    "Webhook calls by subscriber (its registry name) and outcome: sent; refused (an answer for good, a 3xx or 4xx but "
    "429, or a URL the client refuses: dead-lettered at once); failed (no answer, a timeout, 429 or 5xx: retried, "
    "then parked). Held by an open circuit, or for an unknown subscriber, no call is made and none counted",
    ["subscriber", "outcome"])
WEBHOOK_OUTCOMES = ("sent", "refused", "failed")
DEFERRED = Gauge("notify_deferred_depth", "Notifications deferred (quiet hours, day-before, parked through a provider "
                 "outage) and not yet released")
QUEUED = Gauge("notify_queue_depth", "Notifications waiting for a sender", ["lane"])
COMMIT_FAILURES = Counter("notify_commit_failures_total",
                          "Offset commits refused by the group coordinator (the records are redone, never lost)",
                          ["when"])
DRAIN_TIMEOUTS = Counter("notify_drain_timeouts_total",
                         "Revocations that handed partitions over while provider calls were still under way (their "
                         "notifications are not in the ledger yet: the next owner may send them again)")
SKIPPED = Counter("notify_records_skipped_total",
                  "Canonical records that gave no notification because they are no valid event (or met a bug); "
                  "reason ledger_invalid: records of notify's ledger topic read back that are no entry; reason "
                  "deadline_state_invalid: states of the deadline tracker's changelog restored that are no dossier's; "
                  "deadline_message_invalid: records of the tracker's input topic that are no dossier nor alert",
                  ["reason"])
PARKED = Counter("notify_parked_total", "Notifications deferred in the ledger through a provider failure and tried "
                 "again later: their retries spent (for NOTIFY_PARK_S), or held by an open circuit (ADR 0031, 0032)",
                 ["channel"])
DEFERRALS_TOO_LARGE = Counter(
    "notify_deferrals_too_large_total",
    "Notifications that could not wait in the ledger (deferred or parked) because their entry would pass the ledger "
    "topic's max.message.bytes (a webhook of an event past intake's default canonical limit): dead-lettered "
    "(reason deferral_too_large, or retries_exhausted once their retries were spent), never sent to be refused",
    ["channel"])
CIRCUITS_OPEN = Gauge("notify_circuits_open", "Open circuits: a provider channel, or a webhook subscriber's endpoint, "
                      "that failed NOTIFY_CIRCUIT_FAILURES times in a row; its routine notifications are parked "
                      "without a call, one probe every NOTIFY_CIRCUIT_PROBE_S (ADR 0032)", ["channel"])
CIRCUIT_OPENINGS = Counter("notify_circuit_openings_total", "Times a circuit opened (see notify_circuits_open)",
                           ["channel"])
DEAD_LETTERS_REFUSED = Counter("notify_dead_letters_refused_total",
                               "Dead letters commune.dlq.notify refused for their size even in their least form (the "
                               "notification is dead-lettered on the status topic only)")
NO_RECIPIENT = Counter("notify_no_recipient_total",
                       "Rule matches that found nobody to tell (a directory without the contact; an applicant who "
                       "left none): no notification, no status", ["rule"])
PROVIDER_REPLIES_REFUSED = Counter(
    "notify_provider_replies_refused_total",
    "Messages a provider accepted whose reply was not kept: reason provider_id_refused (a message id not short and "
    "plain, not stored), reply_too_large (a reply over 64 KiB, not read) or reply_unreadable (a 2xx whose body was "
    "not in within 1 s, cut off or badly encoded); sent all the same", ["channel", "reason"])
STATUSES_REFUSED = Counter("notify_statuses_refused_total",
                           "Status records commune.notify.status refused for their size (not written; the ledger still "
                           "holds the outcome, and the run goes on)")
ERASURE_NOTICES = Counter("notify_erasure_notices_total",
                          "Erasure notices sent to webhook subscribers that receive applicants' data, by subscriber "
                          "and outcome (sent, failed: tried again until taken; ADR 0035)", ["subscriber", "outcome"])
ERASURE_NOTICES_WAITING = Gauge("notify_erasure_notices_waiting",
                                "1 while an erasure notice waits for a subscriber that refused or could not take it "
                                "(it is tried again until taken; later notices to that subscriber wait behind it), "
                                "or while the subscriber's sender has not joined its consumer group for 60 s",
                                ["subscriber"])
