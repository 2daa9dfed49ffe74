"""Notify's settings: a value that would crash or stall the dispatcher is refused at load or made safe."""

from __future__ import annotations

import random
import re
from datetime import time

import pytest
from aiokafka.protocol.group import JoinGroupRequest_v5
from pydantic import ValidationError

from services.common.refused import problems
from services.common.settings import MAX_SESSION_TIMEOUT_MS
from services.notify.policy import Backoff
from services.notify.settings import INT32_MAX, NotifySettings

pytestmark = pytest.mark.unit


def test_backoff_after_very_many_attempts_is_the_cap_not_an_overflow() -> None:
    """Attempt 1025 (17 hours of outage at the 60 s cap with NOTIFY_RETRY_MAX_ATTEMPTS=2000) waits at most the cap;
    `base * 2 ** 1024` raised OverflowError in the sender task, which ended the run."""
    b, rng = NotifySettings(retry_max_attempts=10_000).backoff(), random.Random(3)
    for attempt in (64, 65, 1025, 10**6):
        assert b.cap_s / 2 <= b.delay(attempt, rng) <= b.cap_s
    assert Backoff(factor=1e300, cap_s=5).delay(3, rng) <= 5


@pytest.mark.parametrize("rates", [{"sms": 0}, {"sms": -1}, {"email": "nan"}, {"webhook": "inf"}, {"fax": 10}])
def test_a_rate_that_is_not_a_positive_number_for_a_known_channel_is_refused(rates: dict[str, object]) -> None:
    """A rate of 0 divided by zero on the channel's second send (the run crash-looped); a negative or non-finite one
    made no sense, an unknown channel failed every start."""
    with pytest.raises(ValidationError, match="rate_per_s"):
        NotifySettings(rate_per_s=rates)


@pytest.mark.parametrize("field", ["quiet_start", "quiet_end"])
@pytest.mark.parametrize("value", ["21:00+07:00", "07:00Z"])
def test_quiet_hours_with_an_offset_are_refused(field: str, value: str) -> None:
    """Quiet hours are Vietnam wall-clock times: one with an offset made every citizen request raise TypeError
    (an aware time compared with a naive one)."""
    with pytest.raises(ValidationError, match="Vietnam"):
        NotifySettings(**{field: value})
    assert NotifySettings(**{field: "21:30"}).quiet_hours() is not None
    assert getattr(NotifySettings(**{field: time(22, 0)}), field) == time(22, 0)


@pytest.mark.parametrize(("field", "value"), [
    ("retry_base_s", -5), ("retry_base_s", 0), ("provider_timeout_s", 0), ("routine_workers", 0),
    ("emergency_workers", 0), ("max_pending", 1), ("sms_max_segments", 0), ("sms_max_segments", 1),
])
def test_a_setting_that_would_stall_or_spin_the_dispatcher_is_refused(field: str, value: float) -> None:
    """A negative retry base retried at once, in a loop; a zero timeout failed every call; no sender in a lane
    never sent its notifications (emergencies included); a backlog bound under 2 paused the partitions for good
    (they resume below half of it)."""
    with pytest.raises(ValidationError, match=field):
        NotifySettings(**{field: value})


def test_an_emergency_is_parked_for_the_circuits_probe_interval_unless_the_park_is_shorter() -> None:
    """A parked storm warning is tried again every `circuit_probe_s` (30 s), not every `park_s` (10 min), and never
    later than a routine request would be; circuits off or not (audit: it waited the whole park)."""
    assert NotifySettings().emergency_park_s() == 30.0
    assert NotifySettings(park_s=5, circuit_failures=0).emergency_park_s() == 5.0


@pytest.mark.parametrize(("env", "named"), [
    ({"provider_timeout_s": 8.0}, "NOTIFY_DRAIN_S (15 s)"),
    ({"drain_s": 10.0}, "NOTIFY_DRAIN_S (10 s)"),
    ({"provider_timeout_s": 8.0, "drain_s": 20.0}, "NOTIFY_STOP_DEADLINE_S (25 s)"),
    ({"stop_deadline_s": 20.0}, "NOTIFY_STOP_DEADLINE_S (20 s)"),
])
def test_a_drain_shorter_than_a_jobs_provider_calls_is_refused(env: dict[str, float], named: str) -> None:
    """A revocation and a stop wait for the calls under way (ADR 0012); a Zalo message's ZNS call and its SMS
    fallback can take twice the provider timeout, so a drain (or a stop deadline, less the final commits) no longer
    than that would give partitions up with a call under way, for the next owner to send again."""
    with pytest.raises(ValidationError, match=re.escape(named)):
        NotifySettings(**env)
    assert NotifySettings().drain_s >= 2 * NotifySettings().provider_timeout_s + 1
    assert NotifySettings(provider_timeout_s=7.0, drain_s=15.0, stop_deadline_s=25.0).stop_drain_s() == 15.0
    with pytest.raises(ValidationError, match=re.escape("NOTIFY_DRAIN_S (14.5 s)")):  # no second for the ledger
        NotifySettings(provider_timeout_s=7.0, drain_s=14.5)


def test_a_rebalance_timeout_a_join_request_cannot_carry_is_refused() -> None:
    """The consumers join with session + drain + commit as the rebalance timeout, a 32-bit field of JoinGroup: a
    drain of 25 days could not be encoded (aiokafka's coordinator failed at every join, the run restarted for ever).
    Such a drain is refused naming NOTIFY_DRAIN_S, and the longest session and drain accepted fit the field."""
    with pytest.raises(ValidationError) as refused:
        NotifySettings(drain_s=25 * 86_400.0, stop_deadline_s=30.0)
    assert [line.split(":")[0] for line in problems(refused.value, NotifySettings)] == ["NOTIFY_DRAIN_S"]
    request = JoinGroupRequest_v5("g", 10_000, 25 * 86_400_000, "", None, "consumer", [("range", b"")])
    with pytest.raises(ValueError, match="format requires"):
        request.encode()  # what aiokafka sent at every join
    longest = NotifySettings(session_timeout_ms=MAX_SESSION_TIMEOUT_MS, drain_s=3_600.0, stop_deadline_s=30.0)
    with pytest.raises(ValidationError):
        NotifySettings(drain_s=3_600.1)
    JoinGroupRequest_v5("g", MAX_SESSION_TIMEOUT_MS, longest.rebalance_timeout_ms(), "", None, "consumer",
                        [("range", b"")]).encode()
    assert longest.rebalance_timeout_ms() <= INT32_MAX


def test_the_deadline_trackers_port_is_not_the_workers() -> None:
    """The tracker and the worker each serve /metrics on NOTIFY_HTTP_HOST: one port for both is refused (one of them
    could not bind and the process crash-looped); the same number is fine when the tracker or the server is off."""
    with pytest.raises(ValidationError, match="NOTIFY_DEADLINE_WEB_PORT and NOTIFY_HTTP_PORT"):
        NotifySettings(http_port=9102, deadline_web_port=9102)
    NotifySettings(http_port=9102, deadline_web_port=9102, deadlines=False)
    NotifySettings(http_port=0, deadline_web_port=0)


@pytest.mark.parametrize(("days", "named"), [(20.0, "shorter than"), (400.0, "exceeds the ledger topic's retention")])
def test_a_ledger_window_that_would_forget_ids_still_needed_is_refused_at_load(days: float, named: str) -> None:
    """NOTIFY_LEDGER_KEEP_DAYS shorter than the inputs stay readable (a record read again after its id was forgotten is
    sent twice) or longer than the ledger keeps its entries (a restore misses ids): refused when the settings load,
    naming the variable, no longer only when a run starts (exit 1, the retention's message without the variable)."""
    with pytest.raises(ValidationError, match=named) as refused:
        NotifySettings(ledger_keep_days=days)
    assert "NOTIFY_LEDGER_KEEP_DAYS" in str(refused.value)
    assert NotifySettings(ledger_keep_days=40.0).ledger_keep_days == 40.0
