"""The start-up check of topic configs on the secure broker: a service principal may describe its own topics'
configs; a principal without that right is told so once and goes on."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from schemas.events import Family
from schemas.topics import METRICS_CHANGELOG, METRICS_SNAPSHOTS
from services.common.acls import SOURCES_FILE
from services.common.admin import ensure_topics
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.security.conftest import SecureBroker

pytestmark = pytest.mark.kafka


async def test_a_service_checks_its_topics_configs_and_a_principal_without_the_right_goes_on(
        secure_broker: SecureBroker) -> None:
    """`metrics` describes its changelog's config (DescribeConfigs, services.common.acls) and finds it as the registry
    says; a source's principal, which has no such right, gets one warning naming the refusal and its check passes."""
    with capture_logs() as logs:
        assert await ensure_topics(secure_broker.conn("metrics"), [METRICS_CHANGELOG, METRICS_SNAPSHOTS]) == []
    assert [e for e in logs if e["event"].startswith("topics.")] == []
    assert REGISTRY.get_sample_value("commune_topic_config_drift", {"topic": METRICS_CHANGELOG.name}) == 0
    entry = load_registry(SOURCES_FILE).by_id["thuong-lam-one-stop"]
    bound = bound_topic(Family.DOSSIER, entry)
    with capture_logs() as logs:
        assert await ensure_topics(secure_broker.conn(f"source-{entry.id}"), [bound]) == []
    [told] = [e for e in logs if e["event"].startswith("topics.")]
    assert told["event"] == "topics.configs_not_checked" and told["log_level"] == "warning"
    assert told["refused"] == [f"{bound.name}: TopicAuthorizationFailedError (Topic authorization failed.)"]
