"""notify on the real broker with real local providers: languages, channels, webhooks, dedup, status, DLQ."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemas.notification import NotificationKind
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from tests.kafkatools import free_port, read_all
from tests.notify.conftest import MailSink, StartNotify, caught_up, publish, statuses
from tests.notify.events import dossier, storm, visit_completed
from tests.notify.oracle import accepted_sends, all_sent, expected_sends, requests_per_key, sms_accepted
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


async def test_citizens_staff_and_subscribers_each_get_one_message_in_their_language(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        smtp: tuple[MailSink, int], tmp_path: Path) -> None:
    """vi and km SMS, Zalo falling back to SMS, staff e-mail, a signed webhook; a redelivered event sends nothing new.

    Neither the status topic nor the worker's logs carry phone numbers or names.
    """
    metrics_port = free_port()
    start_notify(NOTIFY_ZALO_URL=f"http://127.0.0.1:{free_port()}", NOTIFY_HTTP_PORT=str(metrics_port))  # ZNS down
    vi, km = dossier("e-vi", locale="vi", code="D-VI"), dossier("e-km", locale="km", code="D-KM")
    zalo = dossier("e-zalo", code="D-ZL", applicant={"phone": "0911111111", "zalo_user_id": "z-1"})
    await publish(kafka_bootstrap, namespace, vi, km, zalo, visit_completed())
    sink = smtp[0]

    def first_round() -> bool:
        assert len(fake.accepted) >= 6 and len(sink.by_id) >= 1, (list(fake.accepted), dict(sink.by_id))
        return True

    await eventually_async(first_round, timeout=60, interval=0.2, what="six provider requests and one e-mail")
    sms = {r.body["text"] for r in fake.accepted.values() if r.path == "/sms"}
    assert "Hồ sơ D-VI (Đăng ký khai sinh) đã được tiếp nhận. Ngày hẹn trả kết quả: 07/11/2025." in sms
    assert "ឯកសារ D-KM (Đăng ký khai sinh) ត្រូវបានទទួលហើយ។ ថ្ងៃណាត់ទទួលលទ្ធផល៖ 07/11/2025។" in sms
    assert any(r.body["to"] == "0911111111" for r in fake.accepted.values() if r.path == "/sms")
    hooks = [r for r in fake.accepted.values() if r.path == "/hooks/prov-08"]
    assert len(hooks) == 3 and fake.bad_signatures == 0
    assert all("applicant" not in h.body["event"]["data"] for h in hooks)
    assert list(sink.by_id.values()) == [1] and "41" in next(iter(sink.bodies.values()))

    await publish(kafka_bootstrap, namespace, vi, km)  # redelivery of the same events (same ids)
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, expect=7, idle=3))
    assert sorted(s["outcome"] for s in status).count("sent") == 7
    assert set(fake.successes.values()) == {1} and sum(fake.replays.values()) == 0
    assert all("0912345678" not in str(s) for s in status)
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
        metrics = await resp.text()
    assert 'notify_notifications_total{channel="sms",outcome="sent",type="dossier_accepted"} 2.0' in metrics
    assert 'notify_notifications_total{channel="zalo",outcome="sent",type="dossier_accepted"} 1.0' in metrics
    assert 'notify_delivery_latency_seconds_count{lane="routine"} 7.0' in metrics
    assert "notify_deferred_depth 0.0" in metrics
    # each call to the subscriber under its registry name; the outcomes it never had exported at 0 from the start
    assert 'notify_webhook_calls_total{outcome="sent",subscriber="prov-08"} 3.0' in metrics
    assert 'notify_webhook_calls_total{outcome="refused",subscriber="prov-08"} 0.0' in metrics
    assert "0912345678" not in metrics
    logs = (tmp_path / "notify.log").read_text(encoding="utf-8")
    assert "notify.sent" in logs
    assert not any(secret in logs for secret in ("0912345678", "0911111111", "Trần Văn Minh", "cb01@example"))


async def test_quiet_hours_defer_citizens_but_not_emergencies(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """In quiet hours a citizen SMS is deferred (status 'deferred') and sent when they end; a storm warning goes now."""
    from datetime import datetime, timedelta

    from schemas.times import VIETNAM

    # quiet hours end a minute from now (25 s was once: notify's start, the storm's SMS and reading four statuses
    # had to come first); the citizen's SMS is judged by when it arrived, not by its absence at some moment
    now = datetime.now(VIETNAM)
    quiet_end = (now + timedelta(seconds=60)).replace(microsecond=0)
    start, end = (now - timedelta(hours=1)).time(), quiet_end.time()
    start_notify(NOTIFY_QUIET_START=start.strftime("%H:%M:%S"), NOTIFY_QUIET_END=end.strftime("%H:%M:%S"))
    await publish(kafka_bootstrap, namespace, dossier("q-1", code="D-Q"), storm("s-1"))
    await eventually_async(lambda: len(fake.texts()) == 2, timeout=30, interval=0.2,
                           what="the two storm recipients' SMS, at once")
    assert all(t.startswith(("KHẨN CẤP", "បន្ទាន់")) for t in fake.texts())
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, expect=4, idle=1))
    assert [s["kind"] for s in status if s["outcome"] == "deferred"] == [NotificationKind.DOSSIER_ACCEPTED.value]
    await eventually_async(lambda: len(fake.texts()) == 3, timeout=120, interval=0.2,
                           what="the deferred SMS, released when quiet hours end")
    [citizen] = [r for r in fake.accepted.values() if r.path == "/sms" and "D-Q" in r.body.get("text", "")]
    assert citizen.at >= quiet_end.timestamp(), "the citizen's SMS came before quiet hours ended"


async def test_permanent_failure_is_dead_lettered_with_reason(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """A subscriber rejecting the signature (401) is not retried: DLQ record with reason, 'dead_lettered' status."""
    fake.webhook_secrets["prov-08"] = "another-secret"
    start_notify()
    await publish(kafka_bootstrap, namespace, dossier("dl-1", status=4))
    [dead] = await read_all(kafka_bootstrap, notify_topics.dlq, expect=1, timeout=40)
    assert dict(dead.headers)["dlq.reason"] == b"http_401"
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, expect=2, idle=1))
    assert [s["outcome"] for s in status] == ["failed", "dead_lettered"]
    assert fake.bad_signatures == 1 and not fake.accepted



async def test_a_gateway_down_past_the_retries_budget_parks_the_notification_and_sends_it_once_back(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """A gateway down longer than the retries' budget: every attempt is a 'failed' status, then the request waits in
    the ledger (`deferred`, reason `parked:http_503`) and is tried again, until the gateway is back: sent once, no
    dead letter (before, it was dead-lettered after the budget, about half an hour with the defaults, and nothing
    sent it again)."""
    fake.outage(600)
    start_notify(NOTIFY_RETRY_MAX_ATTEMPTS="3", NOTIFY_RETRY_BASE_S="0.1", NOTIFY_PARK_S="2",
                 NOTIFY_SUBSCRIBERS_FILE="")
    await publish(kafka_bootstrap, namespace, dossier("gone-1", code="D-GONE"))

    async def parked_twice() -> bool:  # parked, released, tried again and parked again: the outage outlasts both
        status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=0.5))
        return [s.get("reason") for s in status].count("parked:http_503") >= 2
    await eventually_async(parked_twice, timeout=60, interval=0.5, what="the SMS parked twice")
    fake.faults.outage_until = 0  # the gateway is back
    await eventually_async(lambda: sms_accepted(fake) == 1, timeout=60, interval=0.2, what="the SMS sent")
    await caught_up(kafka_bootstrap, namespace)
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=2))
    outcomes = [(s["outcome"], s["attempt"], s.get("reason")) for s in status]
    assert outcomes[:4] == [("failed", 1, "http_503"), ("failed", 2, "http_503"), ("failed", 3, "http_503"),
                            ("deferred", 3, "parked:http_503")]
    assert outcomes[-1][0] == "sent" and [o for o, *_ in outcomes].count("sent") == 1
    assert fake.rejected >= 3 and set(requests_per_key(fake).values()) == {1}  # one accepted request
    assert await read_all(kafka_bootstrap, notify_topics.dlq, idle=1) == []


async def test_while_the_gateway_is_down_its_circuits_hold_its_notifications_and_e_mail_goes_on(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders, smtp: tuple[MailSink, int]) -> None:
    """The HTTP gateway (SMS and the subscriber's webhooks) down: after 3 failures in a row each circuit opens and
    its notifications are parked (`parked:circuit_open`) without a call, so the gateway gets a few calls, not 40
    attempts for each of the 40 requests (without circuits, NOTIFY_CIRCUIT_FAILURES=0: ~1,600 calls in the review's
    runs), and the routine lane stays free: an e-mail published after them is sent during the outage. Zalo messages
    whose ZNS cannot be reached fall back to SMS, and SMS's circuit holds them too (`parked:circuit_open:sms`; before,
    each fallback called the gateway on every retry). Once the gateway is back a probe closes each circuit and every
    request is sent once, each Zalo message by SMS under its own Idempotency-Key."""
    fake.outage(600)
    # the routine lane held to 20 jobs, a third of the 60 requests (without circuits the e-mail waits past 30 s); its
    # releases a tick are a quarter of it: with 10, 2 a second, and the 60 requests took 30 s once the gateway was back
    start_notify(NOTIFY_CIRCUIT_FAILURES="3", NOTIFY_CIRCUIT_PROBE_S="1", NOTIFY_PARK_S="5",
                 NOTIFY_MAX_PENDING="20", NOTIFY_RETRY_MAX_ATTEMPTS="40", NOTIFY_ROUTINE_WORKERS="4",
                 NOTIFY_ZALO_URL=f"http://127.0.0.1:{free_port()}")  # ZNS not reached: every Zalo message falls back
    events = [dossier(f"cb-{i}", code=f"D-CB-{i}") for i in range(20)]
    zalo = [dossier(f"cbz-{i}", code=f"D-CBZ-{i}", applicant={"phone": "0911111111", "zalo_user_id": f"z-{i}"})
            for i in range(10)]
    await publish(kafka_bootstrap, namespace, *[e for pair in zip(events, zalo, strict=False) for e in pair],
                  *events[len(zalo):])

    async def all_held() -> bool:
        status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=0.5))
        held = {(s["channel"], s["reason"]) for s in status if str(s.get("reason")).startswith("parked:circuit")}
        assert held == {("sms", "parked:circuit_open"), ("webhook", "parked:circuit_open"),
                        ("zalo", "parked:circuit_open:sms")}, held
        return True
    opened = time.monotonic()  # before they open: the bound below is generous
    await eventually_async(all_held, timeout=60, interval=0.5, what="both circuits open, Zalo's fallbacks held")
    await publish(kafka_bootstrap, namespace, visit_completed("cb-visit"))
    sink = smtp[0]
    await eventually_async(lambda: sum(sink.by_id.values()) == 1, timeout=30, interval=0.2,
                           what="the e-mail sent during the outage")
    assert time.monotonic() < fake.faults.outage_until and not fake.accepted
    # the failures that opened each circuit (3 + 3), the calls already under way beside them (4 senders), and the
    # probes since (one a second per circuit at most): far from one call per request
    rejected = fake.rejected
    assert rejected < 3 + 3 + 4 + 2 * (time.monotonic() - opened), rejected
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=0.5))
    zalo_keys = {str(s["notification_id"]) for s in status if s["channel"] == "zalo"}
    assert len(zalo_keys) == len(zalo)
    # per Zalo message: a failure before the circuit opened (or beside the calls that opened it), and the probes it
    # happened to be; before, every fallback met the gateway on each of its retries (~40 each in 80 s)
    tried = {k: fake.rejected_keys[k] for k in zalo_keys}
    assert sum(tried.values()) < len(zalo) + 2 * (time.monotonic() - opened), tried
    fake.faults.outage_until = 0  # the gateway is back
    want = expected_sends(events) + expected_sends(zalo, zns_unreachable=True)
    await eventually_async(all_sent(fake, want), timeout=90, interval=0.5, what="every SMS and webhook sent")
    await caught_up(kafka_bootstrap, namespace)
    assert accepted_sends(fake) == want and set(requests_per_key(fake).values()) == {1}
    assert all(fake.accepted[k].path == "/sms" and fake.successes[k] == 1 and not fake.replays[k] for k in zalo_keys)
    assert await read_all(kafka_bootstrap, notify_topics.dlq, idle=1) == []
    assert list(sink.by_id.values()) == [1]
