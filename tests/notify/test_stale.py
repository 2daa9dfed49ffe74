"""Stale events: a warning whose broadcast is over, a visit already held, are not sent; the skip is an outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from schemas.announcement import AnnouncementScheduledEvent
from schemas.notification import NotificationRequest
from services.notify import metrics, rules, timing
from services.notify.delivery import Dispatcher
from services.notify.policy import QuietHours
from services.notify.subscribers import Registry
from tests.notify.events import broadcast_failed, directory, dossier, visit_completed, visit_scheduled
from tests.notify.fakes import Calls, FakeChannel, FixedClock
from tests.notify.test_dispatcher import LEDGER, running, settle

pytestmark = pytest.mark.unit
NIGHT = datetime(2026, 11, 3, 19, 0, tzinfo=UTC)  # 02:00 on 4 November in Vietnam: quiet hours
HOOKS = Registry.model_validate({"subscribers": [{"name": "pdc", "url": "http://127.0.0.1:1/h", "secret": "s3"}]})


def warning(starts_at: datetime, ends_at: datetime | None = None) -> AnnouncementScheduledEvent:
    return AnnouncementScheduledEvent.model_validate({
        "id": "ann-old", "source": "/communes/02269/loudspeakers", "time": starts_at - timedelta(hours=1),
        "subject": "A-1", "commune": "02269", "province": "08",
        "data": {"announcement_id": "A-1", "category": "storm", "title": "Bão số 13", "target_clusters": ["C1"],
                 "target_villages": ["Thôn Nà Tàng"], "starts_at": starts_at, "ends_at": ends_at}})


def people(requests: list[NotificationRequest]) -> list[NotificationRequest]:
    return [r for r in requests if r.rule != "webhook:pdc"]


def test_a_warning_expires_when_its_broadcast_ends_and_a_visit_when_it_is_held() -> None:
    """A warning's messages to people expire at its end (or 24 hours after its start when it has none), a visit's
    day-before message when the visit's day begins; webhook deliveries never (a subscriber gets every event, late or
    not)."""
    start = datetime(2025, 11, 3, 1, 0, tzinfo=UTC)
    ended = rules.for_event(warning(start, start + timedelta(hours=2)), directory(), HOOKS)
    assert {r.expires_at for r in people(ended)} == {start + timedelta(hours=2)}
    open_ended = rules.for_event(warning(start), directory(), HOOKS)
    assert {r.expires_at for r in people(open_ended)} == {start + timing.ANNOUNCEMENT_HORIZON}
    assert timedelta(hours=24) == timing.ANNOUNCEMENT_HORIZON
    assert [r.expires_at for r in ended + open_ended if r.rule == "webhook:pdc"] == [None, None]
    [visit] = rules.for_event(visit_scheduled(when=start), directory(), Registry())
    assert visit.expires_at == datetime(2025, 11, 2, 17, 0, tzinfo=UTC)  # 3 November, 00:00 in Vietnam


def test_a_visit_message_saying_tomorrow_is_never_sent_on_the_visits_day() -> None:
    """The day-before message ("Tổ lưu động đến ... ngày mai") of a visit at 14:00 scheduled that morning, or deferred
    by the quiet hours to 07:00 on the visit's day, has expired (time audit: both went out saying "tomorrow" on the
    day itself); one released the evening before still goes. A visit dated 70 years after its event (a mistyped
    year) expires at once instead of sitting deferred in the ledger for decades."""
    visit_at = datetime(2025, 11, 10, 7, 0, tzinfo=UTC)  # 14:00 in Vietnam
    [request] = rules.for_event(visit_scheduled(when=visit_at), directory(), Registry())
    same_morning = datetime(2025, 11, 10, 1, 30, tzinfo=UTC)  # 08:30 in Vietnam
    assert Dispatcher._expired(request, same_morning)
    assert Dispatcher._expired(request, datetime(2025, 11, 10, 0, 0, tzinfo=UTC))  # 07:00, after the quiet hours
    assert not Dispatcher._expired(request, datetime(2025, 11, 9, 12, 0, tzinfo=UTC))  # 19:00 the evening before
    event = visit_scheduled("typo", when=visit_at)
    far_off = event.data.model_copy(update={"scheduled_for": visit_at.replace(year=2095)})
    typo = event.model_copy(update={"data": far_off})
    [far] = rules.for_event(typo, directory(), Registry())
    assert far.expires_at == typo.time and Dispatcher._expired(far, datetime(2025, 11, 6, tzinfo=UTC))


def test_a_status_message_and_a_visit_summary_expire_a_window_after_their_event() -> None:
    """A dossier's messages to its applicant, and a visit's summary to the centre, expire `STATUS_MESSAGE_WINDOW`
    (30 days) after the event, or after the dossier's due date when that is later (a request for documents whose
    portal time is the day of receipt, weeks before: the review found it expired on arrival): a province re-syncing
    last year's dossiers does not text every applicant of them (before, they had no expiry); webhook deliveries
    still never expire."""
    assert timedelta(days=30) == timing.STATUS_MESSAGE_WINDOW
    for status in (2, 3, 5, 6, 9, 10):  # accepted, rejected, documents and payment requested, processed, returned
        event = dossier(f"old-{status}", status=status)
        old = event.model_copy(update={"time": datetime(2025, 11, 3, 1, 5, tzinfo=UTC)})
        requests = rules.for_event(old, directory(), HOOKS)
        latest = max(old.time, old.data.due_at or old.time)
        assert {r.expires_at for r in people(requests)} == {latest + timing.STATUS_MESSAGE_WINDOW}, status
        assert [r.expires_at for r in requests if r.rule == "webhook:pdc"] == [None]
    received = dossier("late-request", status=5).model_copy(update={"time": datetime(2025, 11, 3, tzinfo=UTC)})
    data = received.data.model_copy(update={"due_at": datetime(2025, 12, 20, tzinfo=UTC)})
    [request] = people(rules.for_event(received.model_copy(update={"data": data}), directory(), HOOKS))
    assert request.expires_at == datetime(2025, 12, 20, tzinfo=UTC) + timing.STATUS_MESSAGE_WINDOW  # from the due date
    summary = visit_completed()
    [request] = rules.for_event(summary, directory(), Registry())
    assert request.expires_at == summary.time + timing.STATUS_MESSAGE_WINDOW


async def test_a_stale_warning_and_a_past_visit_are_not_sent_but_counted_and_logged() -> None:
    """At 02:00 a storm warning of a year ago (it went out at once, quiet hours or not, to every village contact)
    and a visit held a week ago (deferred to 07:00 as 'tomorrow') are not sent: each is done with outcome expired
    (ledger, status, counter, log `notify.expired`); redelivered, nothing new happens."""
    year_ago = NIGHT - timedelta(days=365)
    requests = people(rules.for_event(warning(year_ago, year_ago + timedelta(hours=2)), directory(), HOOKS))
    requests += rules.for_event(visit_scheduled(when=NIGHT - timedelta(days=7)), directory(), Registry())
    channel = FakeChannel()
    before = metrics.NOTIFICATIONS.labels("emergency", "sms", "expired")._value.get()
    with capture_logs() as logs:
        async with running(channel, clock=FixedClock(NIGHT), quiet=QuietHours()) as s:
            done = Calls()
            for request in requests:
                await s.dispatcher.submit(request, done)
            assert done.count == len(requests) == 3 and channel.attempted == [] and not s.ledger.deferred
            for request in requests:
                assert s.outcomes(request.notification_id) == [("expired", 0)]
                assert request.notification_id in s.ledger.done
            assert [m.json() for m in s.producer.to(LEDGER)] == [{"state": "done", "outcome": "expired"}] * 3
            for request in requests:
                await s.dispatcher.submit(request, done)
            assert done.count == 6 and len(s.producer.sent) == 6
    assert metrics.NOTIFICATIONS.labels("emergency", "sms", "expired")._value.get() == before + 2
    expired = [e for e in logs if e["event"] == "notify.expired"]
    assert sorted(e["rule"] for e in expired) == ["announcement.emergency"] * 2 + ["visit.day-before"]


async def test_a_deferred_visit_released_after_the_visit_is_not_sent() -> None:
    """A day-before message deferred to 08:00 and released only after the visit (a worker down all day) expires
    at release instead of telling the village of a visit that is over."""
    visit_at = datetime(2025, 11, 10, 1, 30, tzinfo=UTC)  # 08:30 in Vietnam
    [request] = rules.for_event(visit_scheduled(when=visit_at), directory(), Registry())
    clock = FixedClock(visit_at - timedelta(days=3))
    channel = FakeChannel()
    async with running(channel, clock=clock, quiet=QuietHours()) as s:
        done = Calls()
        await s.dispatcher.submit(request, done)
        assert request.notification_id in s.ledger.deferred
        clock.now = visit_at + timedelta(hours=1)
        await settle(lambda: request.notification_id in s.ledger.done, "released and expired")
        assert channel.attempted == [] and s.outcomes(request.notification_id) == [("deferred", 0), ("expired", 0)]


async def test_a_broadcast_failure_expires_a_horizon_after_it_failed_and_a_year_old_one_pages_nobody() -> None:
    """A failed broadcast's message to its cluster's operators expires `ANNOUNCEMENT_HORIZON` (24 hours) after
    `failed_at`, as an announcement without an end does after its start (webhooks still never): replaying last
    year's announcement topic pages no operator, at 02:00, in the emergency lane for a storm's. It had no expiry."""
    failed = broadcast_failed("bf-old", category="storm")
    [request] = people(rules.for_event(failed, directory(), HOOKS))
    assert request.expires_at == failed.data.failed_at + timing.ANNOUNCEMENT_HORIZON and request.is_emergency
    assert [r.expires_at for r in rules.for_event(failed, directory(), HOOKS) if r.rule == "webhook:pdc"] == [None]
    channel = FakeChannel()
    async with running(channel, clock=FixedClock(NIGHT)) as s:
        await s.dispatcher.submit(request, Calls())
        assert channel.attempted == [] and s.outcomes(request.notification_id) == [("expired", 0)]


def test_a_broadcast_failure_reported_late_counts_its_horizon_from_the_report() -> None:
    """A cluster that reports its failure on reconnecting, 30 hours on: the operators' message expires 24 hours after
    the report (the event's time), not after `failed_at`, which had already passed when it arrived (review of
    2026-12-02: a storm's failure reported late paged nobody)."""
    failed = broadcast_failed("bf-late", category="storm")
    late = failed.model_copy(update={"time": failed.data.failed_at + timedelta(hours=30)})
    [request] = people(rules.for_event(late, directory(), HOOKS))
    assert request.expires_at == late.time + timing.ANNOUNCEMENT_HORIZON and request.is_emergency
