"""notify under faults on the real broker: provider outage, SIGKILL mid-burst, deadline alerts across a restart."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime, timedelta

import pytest

from schemas.notification import NotificationKind
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from tests.cluster.tools import metric_sum, scrape
from tests.kafkatools import free_port, read_all
from tests.notify.conftest import MailSink, StartNotify, caught_up, publish, statuses
from tests.notify.events import day_ending_in, dossier, one_commune_per_partition
from tests.notify.oracle import accepted_sends, all_sent, expected_sends, requests_per_key, sms_accepted
from tests.notify.test_notify_outage import probe
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def sent_sms(metrics: str) -> float:
    """SMS a worker sent, from its /metrics text (`notify_notifications_total`, outcome sent)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("notify_notifications_total{") and 'channel="sms"' in line
               and 'outcome="sent"' in line)


async def test_provider_outage_of_30s_then_recovery_delivers_everything_exactly_once(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """During a 30 s outage attempts fail and are retried with back-off, or held by the open circuit (parked without a
    call, ADR 0032); afterwards each id succeeds exactly once."""
    events = [dossier(f"out-{i}", code=f"D-OUT-{i}") for i in range(60)]
    want = expected_sends(events)  # an SMS and a webhook each
    fake.outage(30)
    start_notify(NOTIFY_RETRY_MAX_ATTEMPTS="40", NOTIFY_RETRY_CAP_S="3")
    await publish(kafka_bootstrap, namespace, *events)
    await eventually_async(lambda: fake.rejected > 0, timeout=30, interval=0.2, what="attempts failing in the outage")
    await eventually_async(all_sent(fake, want), timeout=75, interval=0.2, what="every send accepted")
    await caught_up(kafka_bootstrap, namespace)  # nothing left in flight: a second success would be counted now
    assert accepted_sends(fake) == want  # nothing more: no other recipient, no second key for one message
    assert set(requests_per_key(fake).values()) == {1}  # one request each: none sent again
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=2))
    # every SMS met the outage: it failed, or its circuit held it (10 failures in a row open it), before it was sent
    met = {s["notification_id"] for s in status if s["channel"] == "sms" and (
        s["outcome"] == "failed" or s.get("reason") == "parked:circuit_open")}
    assert len(met) == len(events) and fake.rejected >= 10
    sent = [s["notification_id"] for s in status if s["outcome"] == "sent"]
    assert len(sent) == len(set(sent)) == 2 * len(events)  # SMS + webhook each
    assert any(s["outcome"] == "failed" and s["reason"] == "http_503" for s in status)
    assert not [s for s in status if s["outcome"] == "dead_lettered"]


async def test_sigkill_mid_burst_loses_nothing_and_succeeds_no_id_twice(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """A worker SIGKILLed mid-burst and restarted: every notification succeeds once; resends are only in-flight ones."""
    events = [dossier(f"kill-{i}", code=f"D-KILL-{i}") for i in range(300)]
    want = expected_sends(events)
    env = {"NOTIFY_RATE_PER_S": '{"sms": 60, "webhook": 200}', "NOTIFY_ROUTINE_WORKERS": "8"}
    proc = start_notify(**env)
    await publish(kafka_bootstrap, namespace, *events)
    await eventually_async(lambda: sms_accepted(fake) >= 80, timeout=60, interval=0.2,
                           what="80 SMS accepted before the kill")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = sms_accepted(fake)
    assert before < len(events)
    start_notify(**env)
    await eventually_async(all_sent(fake, want), timeout=90, interval=0.2, what="every send accepted")
    await caught_up(kafka_bootstrap, namespace)  # the restarted worker redid and committed all it had to redo
    assert accepted_sends(fake) == want  # nothing lost, nothing more
    assert max(requests_per_key(fake).values()) <= 2  # a request sent again once at most
    resent = sum(fake.replays.values())
    # only requests in flight at the kill (routine workers: sms + webhooks) reach the provider again
    assert resent <= 8 + 32
    print(f"accepted before kill: {before}, re-sent after restart (answered as replays): {resent}")


async def test_rebalance_mid_burst_succeeds_each_id_once(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """A second worker joining mid-burst takes partitions over: nothing lost, each id succeeds once, few resends.

    The burst covers every partition and SMS go out far slower than it arrives, so the first worker still has SMS to
    send when the second joins; the burst's last fifth waits until it has joined, so the newcomer has work on its
    partitions however long it takes to start.
    """
    communes = one_commune_per_partition()
    events = [dossier(f"reb-{i}", code=f"D-REB-{i}", commune=communes[i % len(communes)]) for i in range(300)]
    burst, held = events[:240], events[240:]
    want = expected_sends(events)
    # 5 SMS/s a worker: the 200 SMS left once 40 are sent take the first worker 40 s, a margin for the second to
    # start and be assigned on a loaded CI machine (9-12 s here)
    env = {"NOTIFY_RATE_PER_S": '{"sms": 5, "webhook": 200}', "NOTIFY_ROUTINE_WORKERS": "8"}
    start_notify(**env)
    await publish(kafka_bootstrap, namespace, *burst)
    await eventually_async(lambda: sms_accepted(fake) >= 40, timeout=60, interval=0.2,
                           what="40 SMS accepted before the second worker joins")
    port = free_port()
    start_notify(NOTIFY_HTTP_PORT=str(port), **env)  # same group: a rebalance hands half the partitions over
    await eventually_async(lambda: probe(port, "/readyz") == 200, timeout=60, interval=0.1,
                           what="the second worker assigned")
    pending = len(burst) - sms_accepted(fake)  # SMS of the published burst not yet sent when partitions moved
    await publish(kafka_bootstrap, namespace, *held)
    await eventually_async(all_sent(fake, want), timeout=150, interval=0.2, what="every send accepted")
    await caught_up(kafka_bootstrap, namespace)  # both workers done and committed: no send left in flight
    by_second = sent_sms(scrape(port))
    print(f"rebalance: {pending} of {len(burst)} published SMS pending when the second worker joined; "
          f"it sent {by_second:g}; re-sent ids answered as replays: {sum(fake.replays.values())}")
    assert pending > 0, "the second worker must join mid-burst: the first had sent every SMS already"
    assert by_second > 0, "the second worker took partitions over and sent SMS"
    assert accepted_sends(fake) == want  # nothing lost, nothing more
    assert max(requests_per_key(fake).values()) <= 2  # a request sent again once at most
    assert sum(fake.replays.values()) <= 2 * (8 + 32)  # at most what was in flight in the senders when partitions moved


DAY_ENDS_IN_S = 300
AFTER_RESTART_S = 2 * DAY_ENDS_IN_S


async def test_overdue_dossier_alerts_exactly_once_also_across_a_restart(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        smtp: tuple[MailSink, int]) -> None:
    """The faust tracker fires one overdue alert (officer + centre head); a restart neither forgets nor repeats it.

    D-LATE goes overdue before the restart and must not alert again after it; D-LATER goes overdue only after
    the restart, so its alert proves the table was restored from the changelog; D-OK completed in time. Overdue
    begins when the due day is over: the tracker's clock is set ahead so that the day D-LATER and D-OK are due ends
    `DAY_ENDS_IN_S` after the start (`day_ending_in`), and the restarted tracker's clock `AFTER_RESTART_S` further,
    past it: D-LATER is overdue once restored, whenever the restart comes (the day ended 40 s after the start, and a
    slow start and stop on a loaded machine could outlast it). D-LATE was due the day before.
    """
    now = datetime.now(UTC)
    ahead, tracker_now = day_ending_in(DAY_ENDS_IN_S, now)
    day_over = now + timedelta(seconds=DAY_ENDS_IN_S)
    env = {"NOTIFY_DEADLINES": "true", "NOTIFY_DEADLINE_TICK_S": "1", "NOTIFY_DEADLINE_CLOCK_AHEAD_S": ahead}
    restarted = {**env, "NOTIFY_DEADLINE_CLOCK_AHEAD_S": repr(float(ahead) + AFTER_RESTART_S)}
    proc = start_notify(**env)
    late = dossier("late-1", status=4, code="D-LATE", due_at=tracker_now - timedelta(days=1))
    done_a = dossier("ok-1", status=4, code="D-OK", due_at=tracker_now)
    done_b = dossier("ok-2", status=9, code="D-OK", due_at=tracker_now, ended_at=datetime.now(UTC))
    later = dossier("later-1", status=4, code="D-LATER", due_at=tracker_now)
    await publish(kafka_bootstrap, namespace, late, later, done_a, done_b)
    sink = smtp[0]

    def overdue_mails() -> list[str]:
        return [b for b in sink.bodies.values() if "quá hạn" in b]

    await eventually_async(lambda: len(overdue_mails()) == 2, timeout=90, interval=0.2, what="D-LATE's two mails")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "notify stops cleanly on SIGTERM"
    assert datetime.now(UTC) < day_over, "machine too slow for this test's timing"
    start_notify(**restarted)
    await eventually_async(lambda: len(overdue_mails()) == 4, timeout=90, interval=0.2,
                           what="D-LATER's two mails (remembered across the restart)")
    # Next is an absence (no second D-LATE alert). The restored tracker is ticking (D-LATER's alert came from
    # it), and a lost "alerted" flag would re-fire D-LATE on every tick: five more ticks bound the wait, and
    # once the group has caught up every alert written by then has been mailed.
    await asyncio.sleep(5 * float(env["NOTIFY_DEADLINE_TICK_S"]))
    await caught_up(kafka_bootstrap, namespace)
    alerts = [json.loads(r.value) for r in await read_all(kafka_bootstrap, notify_topics.alerts, idle=1)]
    overdue = [a["dossier_code"] for a in alerts if a["kind"] == NotificationKind.OVERDUE.value]
    assert sorted(overdue) == ["D-LATE", "D-LATER"]
    assert len(overdue_mails()) == 4 and set(sink.by_id.values()) == {1}
    assert sum("Hồ sơ D-LATE đã" in b for b in overdue_mails()) == 2


async def test_a_backlog_held_by_the_throttle_shows_as_consumer_lag_until_it_drains(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """The providers are down and the routine consumer pauses at its limit: what waits unread shows in
    `commune_consumer_lag` (it showed nowhere before: the worker stayed ready and kept committing), and goes to 0 once
    the providers are back and everything is sent."""
    events = [dossier(f"lag-{i}", code=f"D-LAG-{i}") for i in range(80)]
    first, then = events[:40], events[40:]  # the first go over the limit, the rest wait unread
    want = expected_sends(events)
    port = free_port()
    fake.outage(600)  # every job retried, held: the routine lane stays over its limit of 4 until the outage is lifted
    # no circuit: it would park the jobs and leave the lane, the point here is a backlog the throttle holds. Two
    # senders: a job in a sender's hands is not in the backlog the throttle counts (the senders bound those), so with
    # 32 senders and 32 jobs a provider slow to answer for a second (this loaded process's fake) left the backlog at
    # 0, the throttle opened, and every record was read: no lag (a CI failure; reproduced with a 3 s slow provider)
    proc = start_notify(NOTIFY_HTTP_PORT=str(port), NOTIFY_MAX_PENDING="4", NOTIFY_CIRCUIT_FAILURES="0",
                        NOTIFY_ROUTINE_WORKERS="2")
    await eventually_async(lambda: probe(port, "/readyz") == 200, timeout=60, interval=0.1, what="notify assigned")
    await publish(kafka_bootstrap, namespace, *first)
    await eventually_async(lambda: fake.rejected > 0, timeout=30, interval=0.1, what="the first attempts failing")
    await publish(kafka_bootstrap, namespace, *then)

    async def lag() -> float:  # in a thread: the fake providers answer meanwhile (they share this loop)
        text = await asyncio.to_thread(scrape, port)
        assert text, f"notify does not answer /metrics (exit code {proc.poll()}; its log is in the report)"
        # a run restarted forgets its lag series and reads its partitions anew: not the backlog this test holds
        assert not metric_sum(text, "commune_service_restarts_total"), "notify's run restarted (log in the report)"
        return metric_sum(text, "commune_consumer_lag")

    behind = await eventually_async(lag, timeout=30, interval=0.2, what="a backlog shown as consumer lag")
    fake.faults.outage_until = 0  # the providers are back
    await eventually_async(all_sent(fake, want), timeout=90, interval=0.2, what="every send accepted")

    async def drained() -> bool:
        return await lag() == 0

    await eventually_async(drained, timeout=30, interval=0.2, what="the lag back to 0")
    dossier_series = [line for line in scrape(port).splitlines()
                      if line.startswith("commune_consumer_lag{") and f'topic="{notify_topics.dossier}"' in line]
    print(f"consumer lag: {behind:g} records behind the throttle when first seen; dossier series {len(dossier_series)}")
    assert 0 < behind <= len(events)  # the pause may come before the first fetch took all of the first 40
    assert dossier_series and all('service="notify"' in line for line in dossier_series)
