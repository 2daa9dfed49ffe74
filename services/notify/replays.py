"""What notify reads from commune.notify.replays: dead-lettered notifications sent again (ADR 0033). Pure.

`commune-bus notify-dlq replay` writes each dead letter's request there under a new id, keyed by its commune (the
partition of its commune's events and ledger). The urgent consumer (that of announcements: a replayed emergency does
not wait behind a dossier backlog) hands it to the dispatcher as any request:
`submit` finds it done if a replay of it was already sent (a replay run twice, or overlapping), and the input
record is committed once it is done, as every other.
"""

from __future__ import annotations

from datetime import timedelta

from schemas.limits import EARLIEST, LATEST
from schemas.notification import NotificationRequest
from services.notify.personal import redact

TIMES = (EARLIEST - timedelta(days=366), LATEST + timedelta(days=366))
"""Where a request's `not_before` and `expires_at` may lie: every time notify writes is within days of a canonical
one (`schemas.limits`, 1975 to 2100): the day before a visit, an alert's end, a park of a week at most. A year each
side is room to spare, and far from what `datetime` holds. The ledger refuses a deferral outside it on restore."""


def request_of(value: bytes | None) -> NotificationRequest:
    """The replayed request, due now and without clear contacts (the opener fills them at delivery: a record that
    carried one in clear is not sent to it); ValueError for a record that is no request, or one whose times name no
    offset (compared with the clock's, they would end the consumer with a TypeError) or lie outside `TIMES` (its
    deferral, written, was refused by the ledger's restore: the replay lost without a word; audit)."""
    request = with_offsets(NotificationRequest.model_validate_json(value or b""))  # ValidationError: a ValueError
    if not in_range(request):
        raise ValueError("a time out of range")
    return redact(request).model_copy(update={"not_before": None})


def in_range(request: NotificationRequest) -> bool:
    """Whether `request`'s `not_before` and `expires_at` (those given) lie within `TIMES`."""
    return all(at is None or TIMES[0] <= at <= TIMES[1] for at in (request.not_before, request.expires_at))


def with_offsets(request: NotificationRequest) -> NotificationRequest:
    """`request` if each of its times names its offset; ValueError if one does not (notify writes none such)."""
    if any(at is not None and at.utcoffset() is None for at in (request.event_time, request.expires_at,
                                                                request.not_before)):
        raise ValueError("a time without an offset")
    return request
