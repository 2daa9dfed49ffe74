"""The gateway while its broker is gone: `/readyz` says so, commits are exported, SIGTERM ends it in bounded time."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest

from schemas.topics import GATEWAY_CLAIMS, RAW, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture
from tests.gateway.conftest import REGISTRY, SECRETS, Site
from tests.gateway.test_idempotency_kafka import post
from tests.notify.test_notify_outage import last_commit, probe
from tests.samples import canonical_dossier
from tests.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
STOP_WITHIN_S = 40.0
"""The claims reader's two clients (10 s each at most) and the publisher's producer (5 s), with room to spare."""


def test_an_outage_is_not_ready_and_sigterm_with_a_claim_pending_ends_in_bounded_time(
        own_broker: OwnBroker, tmp_path: Path) -> None:  # noqa: F811
    """A committed request exports the last-commit time; with the broker gone `/readyz` turns 503 with no request
    failing first, and SIGTERM after an Idempotency-Key request met the outage ends the gateway within a bounded
    time, exit 0, every client stopped or given up on within its deadline. Before: no last-commit time, and ready
    until a publish failed (the claims' client stops had no deadline; in this run the reader's stop ended cancelled
    and the claims producer, its claim unsent, was never stopped)."""
    namespace = "gw" + naming.unique()
    (tmp_path / "sources.yaml").write_text(REGISTRY, encoding="utf-8")
    (tmp_path / "secrets.yaml").write_text(SECRETS, encoding="utf-8")
    specs = [scoped(t, namespace) for t in (*RAW.values(), GATEWAY_CLAIMS)]
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=own_broker.bootstrap), specs))
    site = Site(own_broker.bootstrap, namespace, tmp_path)
    gateway = site.start("g1", GATEWAY_KAFKA_TIMEOUT_S="3")
    port = int(gateway.metrics_url.rsplit(":", 1)[1])  # /metrics and the probes: the runtime's server
    try:
        accepted = post(gateway, orjson.dumps(canonical_dossier("out-" + uuid.uuid4().hex[:10])), str(uuid.uuid4()))
        assert accepted.status_code == 202, accepted.text
        assert last_commit(port) > 0, "a committed transaction exports the last-commit time"

        own_broker.stop()
        refused = post(gateway, orjson.dumps(canonical_dossier("out-" + uuid.uuid4().hex[:10])), str(uuid.uuid4()))
        assert refused.status_code == 503, refused.text
        eventually(lambda: probe(port, "/readyz") == 503, timeout=20, interval=0.2,
                   what="not ready while the broker is gone")

        stopped = time.monotonic()
        gateway.proc.terminate()
        eventually(lambda: gateway.proc.poll() is not None, timeout=STOP_WITHIN_S + 30, interval=0.2,
                   what="the gateway ends after SIGTERM")
        took = time.monotonic() - stopped
        print(f"gateway ended {took:.1f} s after SIGTERM, exit code {gateway.proc.returncode}")
        log = gateway.log.read_text(encoding="utf-8")
        assert '"service.crashed"' not in log and "Unclosed AIOKafkaProducer" not in log
        assert gateway.proc.returncode == 0 and took < STOP_WITHIN_S
    finally:
        site.stop(gateway)
