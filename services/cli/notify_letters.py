"""Pure rules of `notify-dlq list|replay`: notify's dead letters read, filtered, and what a replay writes.

A dead letter on commune.dlq.notify is the notification request as notify gave it up (redacted: no clear contact,
`services.notify.deadletters`) with `dlq.reason`, `dlq.attempts`, `dlq.rejected.at` and, when something was left out
for size, `dlq.omitted`. A replay sends it again under a new id (`replay_notification_id`: the original's is done in
the ledger for good) by writing it to commune.notify.replays, an input of notify's (ADR 0033). One left
incomplete (its recipient, its template parameters or a webhook's body left out) or past its expiry cannot be sent
again, and is said so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from schemas import notify_deadletter, wire
from schemas.notification import ChannelKind, NotificationRequest
from schemas.notify_deadletter import OMITTED
from schemas.replay import letter_digest
from schemas.times import to_utc
from services.notify.personal import redact
from services.notify.policy import replay_notification_id
from services.notify.replays import in_range, with_offsets

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class NotifyFilters:
    reason: str | None = None
    """A reason, or its start (`retries_exhausted` matches `retries_exhausted:http_503`)."""
    channel: ChannelKind | None = None
    since: datetime | None = None
    until: datetime | None = None
    recipient: str | None = None
    """A recipient's reference, whole: `subscriber:<name>` (a webhook subscriber), `officer:cb-17`."""


@dataclass(frozen=True)
class NotifyLetter:
    partition: int
    offset: int
    request: NotificationRequest
    reason: str
    attempts: int
    rejected_at: datetime
    omitted: tuple[str, ...]
    digest: str
    """`schemas.replay.letter_digest` of the record: with the position, the replay log's key."""

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


def letter(partition: int, offset: int, value: bytes | None, headers: Headers,
           key: bytes | None = None) -> NotifyLetter:
    """ValueError for a record that is no dead letter as notify writes them."""
    h = {k: wire.lenient_text(v) for k, v in headers if v is not None}
    try:
        request = with_offsets(NotificationRequest.model_validate_json(value or b""))  # a naive time: ValueError
        reason, attempts = h[notify_deadletter.REASON], int(h[notify_deadletter.ATTEMPTS])
        rejected_at = to_utc(datetime.fromisoformat(h[notify_deadletter.REJECTED_AT]))
    except (KeyError, ValidationError, OverflowError) as exc:
        raise ValueError(f"not a notify dead letter ({type(exc).__name__})") from None
    omitted = tuple(f for f in h.get(OMITTED, "").split(",") if f)
    return NotifyLetter(partition, offset, request, reason, attempts, rejected_at, omitted,
                        letter_digest(key, value, headers))


def matches(d: NotifyLetter, f: NotifyFilters) -> bool:
    return ((f.reason is None or d.reason == f.reason or d.reason.startswith(f"{f.reason}:"))
            and (f.channel is None or d.request.channel is f.channel)
            and (f.since is None or d.rejected_at >= to_utc(f.since))
            and (f.until is None or d.rejected_at <= to_utc(f.until))
            and (f.recipient is None or d.request.recipient.ref == f.recipient))


def why_not(d: NotifyLetter, now: datetime) -> str | None:
    """Why `d` cannot be sent again (None: it can): something it needs was left out for size, or it is over."""
    missing = [f for f in d.omitted if f in ("recipient", "params") or (f == "payload" and
                                                                         d.request.channel is ChannelKind.WEBHOOK)]
    if missing:
        return f"incomplete ({', '.join(missing)} left out for size)"
    if d.request.expires_at is not None and d.request.expires_at <= now:
        return "expired"
    if not in_range(d.request):  # notify refuses such a replay at its door (`replays.request_of`): it would be lost
        return "its times out of range"
    return None


UNKNOWN_OUTCOME = "retries_exhausted"
"""The reason a letter has when notify gave it up after failures a provider may have taken the message through (a
timeout after the request was sent, a 5xx after it was processed): its replay keeps the original's delivery key."""


def may_have_reached(d: NotifyLetter) -> bool:
    """Whether the provider may hold the message already: given up after retryable failures, not refused."""
    return d.reason.startswith(f"{UNKNOWN_OUTCOME}:")


def emergencies_first(letters: Sequence[NotifyLetter]) -> list[NotifyLetter]:
    """The order a replay writes `letters` in: emergencies before routine letters, each in the order given. Notify
    reads a replay partition in order, so a storm warning replayed among thousands of routine letters is read and
    sent first instead of after them (audit). Which letters are written, and once, does not depend on it."""
    return sorted(letters, key=lambda d: not d.request.is_emergency)


def replayed(d: NotifyLetter, dlq_topic: str) -> tuple[str, bytes]:
    """What a replay writes to commune.notify.replays: the new id, and the request as it was dead-lettered under
    that id, due now, without clear contacts (notify opens them at delivery; a letter that held one in clear, which
    notify never writes, does not pass it on). A letter given up after failures that may have reached the provider
    keeps the original's delivery key (`idempotency_key`), so an idempotent provider that has it does not send it
    twice; one the provider refused goes under the new id, as a new message (a key it has seen would get its refusal
    back)."""
    nid = replay_notification_id(d.request.notification_id, dlq_topic, d.partition, d.offset)
    update: dict[str, object] = {"notification_id": nid, "not_before": None}
    update["idempotency_key"] = d.request.delivery_key if may_have_reached(d) else None
    request = redact(d.request).model_copy(update=update)
    return nid, request.model_dump_json(exclude_none=True).encode()
