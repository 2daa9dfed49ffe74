"""Notification ids name the event by source and id (CloudEvents), and the switch from the old ids sends nothing
twice (ADR 0024)."""

from __future__ import annotations

import pytest

from schemas.dossier import DossierStatusChanged
from schemas.notification import ChannelKind, NotificationRequest
from services.notify import rules
from services.notify.personal import redact
from services.notify.policy import legacy_notification_id, notification_id
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier
from tests.notify.fakes import Calls, FakeChannel
from tests.notify.test_dispatcher import running, settle

pytestmark = pytest.mark.unit
HOOKS = Registry.model_validate({"subscribers": [{"name": "prov", "url": "http://127.0.0.1:1/h", "secret": "s3"}]})


def from_source(source: str, commune: str = "02269", province: str = "08") -> DossierStatusChanged:
    """The same event id (1001) as another system may send it: ids are unique per source only."""
    event = dossier("1001")
    return event.model_copy(update={"source": source, "commune": commune, "province": province})


def test_the_same_event_id_from_two_sources_gives_two_notification_ids() -> None:
    """Two sources' events with one id give different ids to the applicant and to a subscriber; the same source
    and id always give the same ids. The id hashed the event id alone: the second citizen's message was marked done
    without a send, and the provider dropped it as a repeat of the first's Idempotency-Key."""
    a = rules.for_event(from_source("/communes/00004/one-stop", "00004", "01"), directory(), HOOKS)
    b = rules.for_event(from_source("/communes/00008/one-stop", "00008", "01"), directory(), HOOKS)
    again = rules.for_event(from_source("/communes/00004/one-stop", "00004", "01"), directory(), HOOKS)
    assert [r.channel for r in a] == [ChannelKind.SMS, ChannelKind.WEBHOOK]
    assert not {r.notification_id for r in a} & {r.notification_id for r in b}
    assert [r.notification_id for r in a] == [r.notification_id for r in again]
    assert [r.event_source for r in a] == ["/communes/00004/one-stop"] * 2
    assert a[0].notification_id == notification_id("1001", "dossier.accepted", "applicant",
                                                   source="/communes/00004/one-stop")


def test_the_legacy_id_is_the_id_before_sources() -> None:
    """The id a request had before this change (event id, rule, recipient: what old ledger entries are keyed by);
    a deadline alert has no source, so its id did not change."""
    [r] = rules.for_event(dossier("e1"), directory(), Registry())
    assert legacy_notification_id(r) == notification_id("e1", "dossier.accepted", "applicant") != r.notification_id
    alert = r.model_copy(update={"event_source": None, "notification_id": notification_id("e1", r.rule, "applicant")})
    assert legacy_notification_id(alert) == alert.notification_id


async def test_two_citizens_with_the_same_event_id_are_both_told() -> None:
    """The review's reproduction: two communes' applicants, one event id, two sources: two provider calls."""
    [a] = rules.for_event(from_source("/communes/00004/one-stop", "00004", "01"), directory(), Registry())
    [b] = rules.for_event(from_source("/communes/00008/one-stop", "00008", "01"), directory(), Registry())
    channel = FakeChannel()
    async with running(channel) as s:
        done = Calls()
        await s.dispatcher.submit(a, done)
        await s.dispatcher.submit(b, done)
        await settle(lambda: done.count == 2, "both done")
    assert sorted(channel.delivered) == sorted([a.notification_id, b.notification_id])


def as_written_before(request: NotificationRequest) -> NotificationRequest:
    """The request as the previous version made it: the legacy id, no source."""
    return request.model_copy(update={"notification_id": legacy_notification_id(request), "event_source": None})


async def test_an_event_sent_before_the_upgrade_is_not_sent_again_after_it() -> None:
    """A record the previous version sent (done under the old id) and redelivered after the upgrade (its offset was
    not committed yet) is done at once, not sent under its new id; so is one the previous version deferred, whose
    deferral is released once, under its old id."""
    [sent] = rules.for_event(dossier("before-1"), directory(), Registry())
    [deferred] = rules.for_event(dossier("before-2"), directory(), Registry())
    channel = FakeChannel()
    async with running(channel) as s:
        await s.ledger.record_done(legacy_notification_id(sent), "sent", commune=sent.commune)
        await s.ledger.record_deferred(redact(as_written_before(deferred)))  # due now: the release sends it
        done = Calls()
        await s.dispatcher.submit(sent, done)
        await s.dispatcher.submit(deferred, done)
        assert done.count == 2
        await settle(lambda: legacy_notification_id(deferred) in s.ledger.done, "the old deferral released")
        await s.dispatcher.submit(deferred, done)
        assert done.count == 3
    assert channel.attempted == [legacy_notification_id(deferred)]


async def test_with_legacy_ids_off_only_the_new_id_counts() -> None:
    """Once no old id can be in the ledger (NOTIFY_LEGACY_NOTIFICATION_IDS=false, ADR 0024), an old entry no
    longer stops a request: the check costs one lookup, not two."""
    [request] = rules.for_event(dossier("after-1"), directory(), Registry())
    channel = FakeChannel()
    async with running(channel) as s:
        s.dispatcher.legacy_ids = False
        await s.ledger.record_done(legacy_notification_id(request), "sent", commune=request.commune)
        done = Calls()
        await s.dispatcher.submit(request, done)
        await settle(lambda: done.count == 1, "sent")
    assert channel.delivered == [request.notification_id]
