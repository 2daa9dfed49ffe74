"""The gateway while its broker is gone: `/readyz` says so, commits are exported, SIGTERM ends it in bounded time."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
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
from tests.samples import canonical_dossier
from tests.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
STOP_WITHIN_S = 40.0
"""The claims reader's two clients (10 s each at most) and the publisher's producer (5 s), with room to spare."""


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def last_commit(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
        text = resp.read().decode()
    lines = [x for x in text.splitlines() if x.startswith('commune_last_commit_timestamp_seconds{service="gateway"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_an_outage_is_not_ready_and_sigterm_with_a_claim_pending_ends_in_bounded_time(
        own_broker: OwnBroker, tmp_path: Path) -> None:  # noqa: F811
    """A committed request exports the last-commit time; with the broker gone `/readyz` turns 503 with no request
    failing first, and SIGTERM after an Idempotency-Key request met the outage ends the gateway within a bounded
    time, exit 0. Before: no last-commit time, ready until a publish failed, and the claim's unsendable batch held
    the claims producer's stop (and the process) for the whole outage."""
    namespace = "gw" + naming.unique()
    (tmp_path / "sources.yaml").write_text(REGISTRY, encoding="utf-8")
    (tmp_path / "secrets.yaml").write_text(SECRETS, encoding="utf-8")
    specs = [scoped(t, namespace) for t in (*RAW.values(), GATEWAY_CLAIMS)]
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=own_broker.bootstrap), specs))
    site = Site(own_broker.bootstrap, namespace, tmp_path)
    gateway = site.start("g1", GATEWAY_KAFKA_TIMEOUT_S="3")
    try:
        accepted = post(gateway, orjson.dumps(canonical_dossier("out-" + uuid.uuid4().hex[:10])), str(uuid.uuid4()))
        assert accepted.status_code == 202, accepted.text
        assert last_commit(gateway.url) > 0, "a committed transaction exports the last-commit time"

        own_broker.stop()
        refused = post(gateway, orjson.dumps(canonical_dossier("out-" + uuid.uuid4().hex[:10])), str(uuid.uuid4()))
        assert refused.status_code == 503, refused.text
        eventually(lambda: readyz(gateway.url) == 503, timeout=20, interval=0.2,
                   what="not ready while the broker is gone")

        stopped = time.monotonic()
        gateway.proc.terminate()
        eventually(lambda: gateway.proc.poll() is not None, timeout=STOP_WITHIN_S + 30, interval=0.2,
                   what="the gateway ends after SIGTERM")
        took = time.monotonic() - stopped
        print(f"gateway ended {took:.1f} s after SIGTERM, exit code {gateway.proc.returncode}")
        assert '"service.crashed"' not in gateway.log.read_text(encoding="utf-8")
        assert gateway.proc.returncode == 0 and took < STOP_WITHIN_S
    finally:
        site.stop(gateway)
