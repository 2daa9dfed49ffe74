"""Delivery policy as pure functions: notification ids, quiet hours, back-off, rate limits."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from schemas.notification import NotificationRequest
from schemas.times import VIETNAM


def notification_id(event_id: str, rule: str, recipient_ref: str, source: str | None = None) -> str:
    """Deterministic: the same event, rule and recipient always give the same id (the idempotency key).

    An event is named by its `source` and `id` (CloudEvents: an id is unique per source only; two communes'
    systems may both send id 1001). A deadline alert has no source: its id is unique by itself (commune,
    dossier, kind, due date). Neither holds a control character, so the separator cannot be forged (ADR 0024).
    """
    event = event_id if source is None else f"{source}\x1f{event_id}"
    return hashlib.sha256(f"{event}\x1f{rule}\x1f{recipient_ref}".encode()).hexdigest()[:32]


def replay_notification_id(nid: str, dlq_topic: str, partition: int, offset: int) -> str:
    """The id a dead-lettered notification is sent again under (`commune-bus notify-dlq replay`, ADR 0033): the
    original's is done in the ledger for good; this one is the same for every replay of that dead letter."""
    return hashlib.sha256(f"{nid}\x1freplay\x1f{dlq_topic}:{partition}:{offset}".encode()).hexdigest()[:32]


def legacy_notification_id(request: NotificationRequest) -> str:
    """The id `request` had before ids named the source (event id, rule, recipient): old ledger entries are keyed by
    it. A request without a source (a deadline alert, or one the previous version wrote) has the same id still."""
    return notification_id(request.event_id, request.rule, request.recipient.ref)


@dataclass(frozen=True)
class QuietHours:
    """Citizens are not messaged between `start` and `end` local time (the window may cross midnight)."""

    start: time = time(21, 0)
    end: time = time(7, 0)

    def is_quiet(self, now: datetime) -> bool:
        local = now.astimezone(VIETNAM).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def release_at(self, now: datetime) -> datetime:
        """When a message deferred at `now` may go out: the next `end`, or `now` if not quiet."""
        if not self.is_quiet(now):
            return now
        local = now.astimezone(VIETNAM)
        release = local.replace(hour=self.end.hour, minute=self.end.minute, second=self.end.second, microsecond=0)
        if release <= local:
            release += timedelta(days=1)
        return release


MAX_EXPONENT = 64
"""Past this many doublings every wait is the cap (a float power beyond ~1024 doublings overflows)."""


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with equal jitter: attempt n waits base*factor**(n-1), capped, half of it random."""

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 8.0
    max_attempts: int = 10

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        exponent = min(max(0, attempt - 1), MAX_EXPONENT)  # any attempt count: no OverflowError in a sender task
        try:
            grown = self.base_s * self.factor ** exponent
        except OverflowError:
            grown = self.cap_s
        full = min(self.cap_s, grown)
        return full / 2 + (rng or random).uniform(0, full / 2)

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


class TokenBucket:
    """Per-channel rate limit: `rate` sends per second with bursts of `burst`, emergencies first: an urgent caller
    may take a token the bucket does not have, down to `-burst` (a debt routine callers pay back by waiting), so a
    storm warning never waits behind routine sends, and the provider gets at most `rate` a second, plus a burst
    of each kind. Time is passed in (pure)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, 0.0

    def give_back(self) -> None:
        """A token taken for a send that was not made (a request its circuit held, ADR 0032): held requests do not
        spend the channel's rate, so the lane's other channels do not wait behind them (review)."""
        self.tokens = min(self.burst, self.tokens + 1)

    def wait_time(self, now: float, urgent: bool = False) -> float:
        """Seconds until a token is available; takes the token when the answer is 0. An `urgent` caller needs the
        bucket above `1 - burst` only (it may leave it in debt), a routine one at 1."""
        if self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        need = 1 - self.burst if urgent else 1.0
        if self.tokens >= need:
            self.tokens -= 1
            return 0.0
        return (need - self.tokens) / self.rate
