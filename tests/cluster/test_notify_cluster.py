"""notify on the 3-broker cluster: a broker SIGKILLed mid-stream and brought back; each notification reaches
its provider exactly once (requests counted per Idempotency-Key at the local fake providers)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from schemas import wire
from schemas.events import FAMILY_OF_TYPE
from schemas.topics import CANONICAL, scoped
from services.notify import rules
from services.notify.fake_providers import FakeProviders
from services.notify.subscribers import Registry
from tests.cluster.tools import Feeder, Sent, Tally, metric_sum, scrape
from tests.faults import Cluster
from tests.kafkatools import free_port, start_service, stop_service
from tests.notify.conftest import DIRECTORY, MailSink
from tests.notify.events import directory, dossier
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
KILLED = 2
N = 240


async def test_broker_killed_mid_stream_reaches_each_provider_once(cluster: Cluster, cluster_namespace: str,
                                                                   tmp_path: Path) -> None:
    """SIGKILL of one of three brokers while notify consumes, sends and writes its ledger: every notification id
    (SMS and signed webhook) reaches the fake provider exactly once, every e-mail once, none is missing."""
    bootstrap, ns = cluster.bootstrap, cluster_namespace
    events = [dossier(f"cl-{i}", code=f"D-CL-{i}") for i in range(N)]
    sms = {r.notification_id for e in events for r in rules.for_event(e, directory(), Registry())}
    sent: list[Sent] = []
    for e in events:
        rec = wire.encode(e)
        sent.append((scoped(CANONICAL[FAMILY_OF_TYPE[e.type]], ns).name, rec.key, rec.value, rec.headers))
    fake = FakeProviders(webhook_secrets={"prov-08": "s3cret"})
    await fake.start()
    sink, smtp_port = MailSink(), free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    (tmp_path / "directory.toml").write_text(DIRECTORY, encoding="utf-8")
    (tmp_path / "subscribers.toml").write_text(
        f'[[subscribers]]\nname = "prov-08"\nurl = "{fake.url}/hooks/prov-08"\nsecret = "s3cret"\n'
        'event_types = ["vn.communebus.dossier.status-changed.v1"]\nprovinces = ["08"]\n', encoding="utf-8")
    port = free_port()
    proc = start_service("services.notify", {
        "KAFKA_BOOTSTRAP": bootstrap, "NOTIFY_NAMESPACE": ns, "NOTIFY_HTTP_PORT": str(port),
        "NOTIFY_DIRECTORY_FILE": str(tmp_path / "directory.toml"),
        "NOTIFY_SUBSCRIBERS_FILE": str(tmp_path / "subscribers.toml"), "NOTIFY_SMS_URL": fake.url,
        "NOTIFY_ZALO_URL": fake.url, "NOTIFY_SMTP_PORT": str(smtp_port), "NOTIFY_QUIET_START": "00:00",
        "NOTIFY_QUIET_END": "00:00", "NOTIFY_DEADLINES": "false", "NOTIFY_RETRY_BASE_S": "0.2",
        "NOTIFY_RETRY_CAP_S": "2", "NOTIFY_RETRY_MAX_ATTEMPTS": "40"}, tmp_path / "notify.log")

    def delivered() -> int:
        assert proc.poll() is None, (tmp_path / "notify.log").read_text()[-3000:]
        return len(fake.accepted)

    try:
        feeder = Feeder(bootstrap, sent, per_second=6, hold_last=60)
        feeding = asyncio.create_task(feeder.run())
        await eventually_async(lambda: delivered() >= 60, timeout=90, interval=0.2, what="notify delivering")
        before = delivered()
        killed_at = await asyncio.to_thread(cluster.kill_node, KILLED)
        print(f"\nbroker {KILLED} killed after {feeder.acked} events acknowledged, {before} delivered")
        restarting = asyncio.create_task(asyncio.to_thread(cluster.start_node, KILLED))
        after_kill = {r.notification_id for r in rules.for_event(events[feeder.acked + 10], directory(), Registry())}
        await eventually_async(lambda: after_kill <= set(fake.accepted) and delivered() > 0, timeout=90,
                               interval=0.1, what="an event sent after the kill delivered")
        recovered_s = time.monotonic() - killed_at
        await restarting
        print(f"notify delivering again {recovered_s:.1f} s after the kill; broker {KILLED} back after "
              f"{time.monotonic() - killed_at:.1f} s, {feeder.acked} events acknowledged")
        assert not feeding.done(), "the broker must come back while events still flow"
        feeder.release.set()  # the last 60 go through the cluster restored
        await feeding
        hooks = N  # one signed webhook per dossier event for the subscriber of province 08
        await eventually_async(lambda: sms <= set(fake.accepted) and delivered() >= len(sms) + hooks, timeout=90,
                               interval=0.2, what="every notification delivered")

        def drained() -> bool:  # nothing queued, and notify itself counts every delivery as sent
            text = scrape(port)
            sent_total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                             if line.startswith("notify_notifications_total{") and 'outcome="sent"' in line)
            return metric_sum(text, "notify_queue_depth") == 0 and sent_total >= len(sms) + hooks

        await eventually_async(drained, timeout=30, interval=0.2, what="notify drained")
        restarts = metric_sum(scrape(port), "commune_service_restarts_total")
        assert proc.poll() is None, "notify must ride through the broker kill"
    finally:
        stop_service(proc, timeout=20)
        smtp.stop()
        await fake.stop()
    requests = {k: fake.successes[k] + fake.replays[k] for k in fake.accepted}
    lost = len(sms - set(fake.accepted)) + max(0, len(sms) + hooks - len(requests))
    duplicated = sum(n - 1 for n in requests.values()) + sum(n - 1 for n in sink.by_id.values())
    tally = Tally("cluster: notify, broker 2 SIGKILLed and restarted (requests per Idempotency-Key)",
                  len(events), lost, duplicated, None, recovered_s, restarts)
    print(tally.line())
    assert (lost, duplicated) == (0, 0), tally.line()
    assert fake.bad_signatures == 0
