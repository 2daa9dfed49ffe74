"""A deferral read back from the ledger topic whose times notify never writes: skipped, counted, never raised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from schemas.notification import NotificationRequest
from services.notify import ledger as ledger_module
from services.notify import ledger_entry, metrics, rules
from services.notify.ledger import Entry, Ledger
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier
from tests.notify.fakes import FakeProducer

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(-timedelta(hours=14))


def request(event_id: str, **times: datetime) -> NotificationRequest:
    return rules.for_event(dossier(event_id), directory(), Registry())[0].model_copy(update=times)


def record(r: NotificationRequest) -> tuple[bytes, bytes, int]:
    """The ledger record of `r` deferred, under its own id, as another writer (or a tool) could put it there."""
    return r.notification_id.encode(), Entry(state="deferred", request=r).model_dump_json().encode(), 0


UNUSABLE = {
    "a naive not_before of year 1": ({"not_before": datetime(1, 1, 1)}, "time_without_offset"),
    "a naive expires_at": ({"not_before": NOW, "expires_at": datetime(2030, 1, 1)}, "time_without_offset"),
    "a naive not_before": ({"not_before": datetime(2026, 12, 9, 8, 0)}, "time_without_offset"),
    "an aware not_before of year 1": ({"not_before": datetime(1, 1, 1, tzinfo=PLUS_14)}, "time_out_of_range"),
    "an aware not_before of year 9999": ({"not_before": datetime(9999, 12, 31, 23, 59, tzinfo=MINUS_14)},
                                         "time_out_of_range"),
    "an aware expires_at of year 9999": ({"not_before": NOW, "expires_at": datetime(9999, 12, 31, tzinfo=UTC)},
                                         "time_out_of_range"),
}


@pytest.mark.parametrize("times, reason", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_a_deferral_whose_times_notify_never_writes_is_skipped_and_counted(
        times: dict[str, datetime], reason: str) -> None:
    """Such an entry passes the request's schema (its two times are plain datetimes): a naive year-1 `not_before`
    raised ValueError out of the ledger tail and every restore (its due time), a naive `expires_at` was released
    and raised TypeError in a sender task (compared with the clock's): each a crash loop. Now it is skipped at the
    read, counted under `ledger_invalid` and logged with the partition and a reason code; the entries around it
    apply."""
    ledger_module.SKIPPED_LOGGED.clear()
    before = metrics.SKIPPED.labels("ledger_invalid")._value.get()
    bad, good = request("bad", **times), request("good", not_before=NOW)
    ledger = Ledger("t.ledger", FakeProducer(), clock=lambda: NOW)
    with capture_logs() as logs:
        ledger.apply_records(0, [(b"n-before", b'{"state":"done","outcome":"sent"}', 0), record(bad), record(good)])
    assert set(ledger.deferred) == {good.notification_id} and ledger.done == {"n-before"}
    assert [r.notification_id for r in ledger.due(NOW + timedelta(days=365 * 200), owned=lambda p: True)] == [
        good.notification_id]
    assert metrics.SKIPPED.labels("ledger_invalid")._value.get() == before + 1
    [line] = [e for e in logs if e["event"] == "notify.ledger_entry_skipped"]
    assert line["why"] == reason and line["partition"] == 0
    assert bad.notification_id not in str(logs)


@pytest.mark.parametrize("at", [datetime(1974, 1, 2, tzinfo=UTC), datetime(1974, 12, 31, tzinfo=UTC),
                                datetime(2101, 6, 1, tzinfo=UTC), datetime(2101, 12, 31, tzinfo=UTC)])
def test_a_deferral_within_a_year_of_the_canonical_times_still_reads(at: datetime) -> None:
    """Every time notify writes is within days of a canonical time (1975 to 2100): the day before a visit of
    1 January 1975, an alert ending after 2100 still read back (no entry notify wrote is lost by the check)."""
    r = request("edge", not_before=at, expires_at=at)
    assert ledger_entry.read(*record(r)[:2]) == (r.notification_id, Entry(state="deferred", request=r))


def test_the_reason_of_an_unusable_time_is_a_code_without_the_time() -> None:
    """The `Unreadable` raised names neither the time nor the id (it reaches a log line)."""
    r = request("bad", not_before=datetime(1, 1, 1))
    with pytest.raises(ledger_entry.Unreadable) as caught:
        ledger_entry.read(*record(r)[:2])
    assert str(caught.value) == "time_without_offset" and "0001" not in repr(caught.value)


@pytest.mark.parametrize("times, reason", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_a_replay_whose_times_the_ledger_refuses_is_refused_at_the_door(
        times: dict[str, datetime], reason: str) -> None:
    """A replayed request (commune.notify.replays) with such times is refused when read (`request_of`: a ValueError,
    skipped and counted as `invalid_field`). One with an `expires_at` of year 9999 was accepted, deferred (quiet
    hours, a provider down), its ledger entry refused by the next restore: the replay lost without a word, its dead
    letter marked replayed (audit)."""
    from services.notify import replays

    with pytest.raises(ValueError, match="a time without an offset" if reason == "time_without_offset"
                       else "a time out of range"):
        replays.request_of(request("bad", **times).model_dump_json().encode())
    assert replays.request_of(request("good", not_before=NOW).model_dump_json().encode()).not_before is None
