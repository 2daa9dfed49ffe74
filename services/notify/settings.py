"""Typed, frozen settings of the notify service: `NOTIFY_*` variables, Kafka connection from `KAFKA_*`."""

from __future__ import annotations

import math
from datetime import time
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from schemas.notification import ChannelKind
from services.common.settings import ConsumerSettings
from services.notify import sms
from services.notify.offsets import COMMIT_TIMEOUT_S
from services.notify.policy import Backoff, QuietHours

CONSUMERS = 2
"""routine and urgent: both commit at a stop"""
CALLS_IN_A_JOB = 2
"""A Zalo message's ZNS call and its SMS fallback: the provider calls one job can have under way in turn"""
LEDGER_ENTRY_S = 1.0
"""What a drain leaves beyond a job's calls for its ledger entry, acknowledged in milliseconds by a broker at work"""
INT32_MAX = 2**31 - 1
"""The largest rebalance timeout (ms) Kafka's JoinGroup request can carry: a 32-bit field. The bounds of
`session_timeout_ms` and `drain_s` keep `rebalance_timeout_ms` under 0.3% of it (a drain of ~25 days was
accepted: aiokafka's coordinator failed at every join, a KafkaError wrapping the ValueError, and the run restarted
for ever)."""
MAX_WORKERS = 1_024
"""Senders of one kind at most: each may hold a provider connection (a file descriptor), and the process's
usual limit is 1,024 open files; rate limits, not senders, set a channel's pace (`rate_per_s`)."""


class NotifySettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", frozen=True, populate_by_name=True, extra="ignore")

    http_port: int = Field(default=9102, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 = none")
    directory_file: Path | None = Field(default=None, description="Recipients directory TOML")
    subscribers_file: Path | None = Field(default=None, description="Webhook subscriber registry TOML")
    zns_templates_file: Path | None = Field(
        default=None, description="The ids of the Zalo ZNS templates registered per kind and language, TOML (ADR "
        "0041); none: the local fake provider's ids")

    sms_url: str = "http://127.0.0.1:8025"
    zalo_url: str = "http://127.0.0.1:8025"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8026, ge=1, le=65535)
    smtp_sender: str = "thong-bao@commune-bus.local"
    provider_timeout_s: float = Field(default=5.0, gt=0, le=600, description="Bounds each provider call whole (an HTTP "
                                      "request, an SMTP session); the drains must be at least twice it and a second")

    sms_segment_limit: int = Field(default=2, ge=1, le=sms.MOST_SEGMENTS,
                                   description="Over this, Vietnamese SMS go unaccented")
    sms_max_segments: int = Field(default=sms.MAX_SEGMENTS, ge=1, le=sms.MOST_SEGMENTS,
                                  description="No SMS is longer: a longer text is cut with an ellipsis (at least "
                                  "sms_segment_limit)")
    quiet_start: time = Field(default=time(21, 0), description="Vietnam wall-clock time, no offset")
    quiet_end: time = Field(default=time(7, 0), description="Vietnam wall-clock time, no offset")
    retry_base_s: float = Field(default=0.5, gt=0, le=3_600.0, description="First wait after a retryable failure")
    retry_cap_s: float = Field(default=60.0, gt=0, le=86_400.0, description="Longest wait between two attempts "
                               "(at most a day: a notification waits no longer between two tries)")
    retry_max_attempts: int = Field(
        default=40, ge=1, le=10_000,
        description="Attempts before a retryable failure is dead-lettered: with the defaults a provider may be down "
        "16-33 minutes (equal jitter) before a notification is given up (it was 28-55 s: a one-minute SMS gateway "
        "outage dead-lettered every notification, emergencies too)")
    rate_per_s: dict[str, float] = Field(
        default_factory=lambda: {"sms": 200.0, "zalo": 200.0, "email": 50.0, "webhook": 200.0},
        description="Sends per second per channel (sms, zalo, email, webhook) from one worker, emergencies and "
                    "routine messages together (an emergency may borrow a burst), a Zalo message's SMS fallback "
                    "counted as an SMS, each a positive number; a channel not named has no limit")
    routine_workers: int = Field(default=32, ge=1, le=MAX_WORKERS, description="Routine jobs sent at once")
    emergency_workers: int = Field(default=8, ge=1, le=MAX_WORKERS, description="Emergency jobs sent at once")
    max_pending: int = Field(
        default=20_000, ge=2, le=1_000_000,
        description="Routine jobs held (queued or waiting for a retry) above which dossier and mobile-team partitions "
        "pause (announcements keep flowing); they resume below half of it. Announcements pause for as many emergency "
        "jobs, or twice as many routine ones")

    park_s: float = Field(
        default=600.0, ge=1.0, le=86_400.0,
        description="A notification whose retries are spent on a provider failure (an outage longer than the "
                    "retries' budget) waits this long deferred in the ledger, then is tried again (3 attempts, then "
                    "parked again), until it is sent; dead-lettered once the next try would be past its expiry (a "
                    "subscriber's webhook, which has none: 7 days after its event)")

    circuit_failures: int = Field(
        default=10, ge=0, le=1_000_000,
        description="Retryable failures in a row after which a provider channel (a webhook subscriber's endpoint "
                    "each its own) is held: its routine notifications are parked without a call (for as long as the "
                    "outage has lasted, up to park_s) while one probe a circuit_probe_s tries it; emergencies are "
                    "always tried. 0: no circuit, every notification is called (ADR 0032)")
    circuit_probe_s: float = Field(
        default=30.0, gt=0, le=3_600.0,
        description="How long an open circuit waits before letting one probe through; also how long an emergency "
                    "whose retries are spent is parked, if shorter than park_s (tried again that soon, circuit or not)")

    write_timeout_ms: int = Field(
        default=180_000, ge=1_000, le=3_600_000,
        description="How long one produce request of a ledger or status write waits for the broker; the write is "
                    "sent again after it while the partition's leader is known (a broker stopped is waited for: a "
                    "sent notification's ledger entry is written when it is back); a write this old whose partition "
                    "shows no leader (a broker coming back may, for a moment), or one waiting for room in a full "
                    "batch, fails and ends the run (its in-doubt calls are sent again)")
    state_dir: Path | None = Field(
        default=None, description="Where the ledger's RocksDB stores live (a fresh folder per run, deleted after); "
                                  "None: the system's temporary folder")
    ledger_keep_days: float = Field(
        default=32.0, gt=0, le=3_650.0,
        description="Done ids are forgotten this long after they were written: the longest an input record stays "
                    "readable (the canonical topics: 30 days' retention + a 1-day segment roll: a record goes only "
                    "with its segment) + 1 day; a shorter window is refused at start (ADR 0020)")
    ledger_prune_every_s: float = Field(default=60.0, gt=0, le=86_400.0,
                                        description="How often old done ids are pruned")
    drain_s: float = Field(
        default=15.0, gt=0, le=3_600.0,
        description="On revocation, how long calls under way may finish: at least twice provider_timeout_s and a "
        "second (a ZNS call, its SMS fallback, the ledger entry), refused otherwise")

    legacy_notification_ids: bool = Field(
        default=True, description="Also count a notification as done or deferred under the id it had before ids "
        "named the event's source (ADR 0024); false once no such ledger entry can remain: one lookup, not two")
    deadlines: bool = Field(default=True, description="Also run the deadline tracker (a child process, ADR 0022)")
    without_privacy_keys: bool = Field(
        default=False, description="Start although no privacy key is configured: every notification to a sealed "
        "contact (an applicant's, as intake seals them, ADR 0015) is then skipped and counted as erased. Off: such a "
        "start is refused, as intake's is, since a missing key would otherwise stop every citizen's notification with "
        "one warning")
    deadline_tick_s: float = Field(default=30.0, gt=0, le=3_600.0)
    deadline_web_port: int = Field(default=6067, ge=0, le=65535)

    @field_validator("directory_file", "subscribers_file", "zns_templates_file", "state_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:  # compared with Vietnam's wall clock: an aware time raised TypeError there
            raise ValueError("a Vietnam wall-clock time without an offset, e.g. 21:00")
        return value

    @field_validator("rate_per_s")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for channel, rate in value.items():
            if channel not in {c.value for c in ChannelKind}:
                raise ValueError(f"unknown channel {channel!r}: one of {', '.join(ChannelKind)}")
            if not (math.isfinite(rate) and rate > 0):  # a rate of 0 divided by zero in the rate bucket
                raise ValueError(f"the rate of {channel} must be a positive number of sends per second")
        return value

    @model_validator(mode="after")
    def _cap_above_unaccenting(self) -> NotifySettings:
        if self.sms_max_segments < self.sms_segment_limit:  # the unaccented text would be cut where it could fit
            raise ValueError("sms_max_segments must be at least sms_segment_limit")
        if self.retry_cap_s < self.retry_base_s:  # the first wait would already be past the longest
            raise ValueError("NOTIFY_RETRY_CAP_S must be at least NOTIFY_RETRY_BASE_S")
        return self

    @field_validator("ledger_keep_days")
    @classmethod
    def _ledger_window(cls, value: float) -> float:
        """Refused at load, not at the run's start: the window must cover what the inputs keep readable and fit what
        the ledger topic keeps (ADR 0020)."""
        from services.notify.ledger_upkeep import LedgerLayoutError, keep_window_ms  # it imports these settings

        try:
            keep_window_ms(value)
        except LedgerLayoutError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _drains_outlast_a_job(self) -> NotifySettings:
        """A revocation and a stop wait for the calls under way and their ledger entries (ADR 0012); each call ends
        within the provider timeout. A drain shorter than a job's calls gave the partitions up with a call still under
        way, so the next owner sent it again."""
        job_s = CALLS_IN_A_JOB * self.provider_timeout_s + LEDGER_ENTRY_S
        if self.drain_s < job_s:
            raise ValueError(f"NOTIFY_DRAIN_S ({self.drain_s:g} s) must be at least twice NOTIFY_PROVIDER_TIMEOUT_S "
                             f"and a second ({job_s:g} s: a Zalo message's ZNS call, its SMS fallback, the ledger "
                             "entry)")
        if self.stop_drain_s() < job_s:
            raise ValueError(f"NOTIFY_STOP_DEADLINE_S ({self.stop_deadline_s:g} s) less the final commits "
                             f"({CONSUMERS * COMMIT_TIMEOUT_S:g} s) must be at least twice "
                             f"NOTIFY_PROVIDER_TIMEOUT_S and a second ({job_s:g} s): a stop drains the calls under way "
                             "within it")
        return self

    @model_validator(mode="after")
    def _tracker_port_of_its_own(self) -> NotifySettings:
        """The deadline tracker serves its /metrics on NOTIFY_HTTP_HOST as the worker does: on the worker's port, one
        of the two could not bind, the process ended, and its restart met the same (a crash loop)."""
        if self.deadlines and self.http_port and self.deadline_web_port == self.http_port:
            raise ValueError(f"NOTIFY_DEADLINE_WEB_PORT and NOTIFY_HTTP_PORT are both {self.http_port}: the deadline "
                             "tracker and the worker each serve /metrics on NOTIFY_HTTP_HOST, give them two ports")
        return self

    def stop_drain_s(self) -> float:
        """How long the end of a run waits for the provider calls under way (`Fence.closed`): `drain_s`, leaving the
        final commits their time within the stop deadline."""
        return max(0.0, min(self.drain_s, self.stop_deadline_s - CONSUMERS * COMMIT_TIMEOUT_S))

    def quiet_hours(self) -> QuietHours:
        return QuietHours(self.quiet_start, self.quiet_end)

    def emergency_park_s(self) -> float:
        """An emergency's park: short, so it goes out within a probe interval of its provider's return, not a whole
        `park_s` after the routine requests (ADR 0031, amended)."""
        return min(self.park_s, self.circuit_probe_s)

    def rebalance_timeout_ms(self) -> int:
        """How long the group waits for a worker to rejoin once a rebalance began (ADR 0012): it learns of it at its
        next heartbeat (within the session timeout), then its revocation drains the calls under way (`drain_s`) and
        commits (`COMMIT_TIMEOUT_S`). aiokafka's default is the session timeout alone (10 s), shorter than the drain: a
        worker still draining was left out of the new generation and its partitions went to another worker, whose
        ledger catch-up could not yet see the calls still under way (review, 2026-12-04)."""
        return self.session_timeout_ms + math.ceil((self.drain_s + COMMIT_TIMEOUT_S) * 1000)

    def backoff(self) -> Backoff:
        return Backoff(base_s=self.retry_base_s, cap_s=self.retry_cap_s, max_attempts=self.retry_max_attempts)
