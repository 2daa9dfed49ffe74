"""services/common/topic_configs.py: a topic's config next to the registry's, what refuses a start, what an
alteration sends."""

from __future__ import annotations

import pytest

from schemas.topics import (
    DLQ_INTAKE,
    INTAKE_DEDUP,
    METRICS_CHANGELOG,
    METRICS_SNAPSHOTS,
    NOTIFY_LEDGER,
    RAW_DOSSIER,
    TOPICS,
    Kind,
)
from services.common.acls import PUBLISHED
from services.common.topic_configs import DYNAMIC_TOPIC_CONFIG, Drift, danger, described, drifts, overlaid

pytestmark = pytest.mark.unit

DEFAULT, STATIC_BROKER = 5, 4  # DescribeConfigs config_source codes besides DYNAMIC_TOPIC_CONFIG


def test_only_registry_keys_that_differ_are_drifts_and_a_list_in_another_order_agrees() -> None:
    """A key the registry does not name is no drift; `delete,compact` is `compact,delete`; a value the broker did
    not report is a drift with actual None."""
    values = {"cleanup.policy": "delete,compact", "retention.ms": "3600000", "retention.bytes": "5000000000",
              "max.message.bytes": NOTIFY_LEDGER.config["max.message.bytes"]}
    assert drifts(NOTIFY_LEDGER, values) == [
        Drift(NOTIFY_LEDGER.name, "retention.ms", "3600000", NOTIFY_LEDGER.config["retention.ms"])]
    assert drifts(NOTIFY_LEDGER, {**values, "retention.ms": NOTIFY_LEDGER.config["retention.ms"]}) == []
    assert drifts(METRICS_CHANGELOG, {}) == [Drift(METRICS_CHANGELOG.name, "cleanup.policy", None, "compact")]


def test_a_compacted_state_topic_that_only_deletes_refuses_the_start() -> None:
    """Every state topic the registry compacts, found `delete`-only (or with no policy reported), is refused; one
    still compacted with another list, or a delete-only topic the registry wants deleted, is a warning. So is the
    snapshot topic found delete-only (a cluster made before it was compacted): a published stream, nothing restores
    from it."""
    compacted = [t for t in TOPICS if "compact" in t.config.get("cleanup.policy", "")]
    assert len(compacted) >= 4
    for spec in compacted:
        for actual in ("delete", None):
            [drift] = drifts(spec, {**spec.config, "cleanup.policy": actual})
            assert (danger(drift, spec.kind) is None) == (spec is METRICS_SNAPSHOTS), drift
    assert danger(Drift("t", "cleanup.policy", "compact", "compact,delete"), Kind.INTERNAL) is None
    assert danger(Drift("t", "cleanup.policy", "compact", "delete"), Kind.INTERNAL) is None


def test_a_message_limit_below_the_registry_refuses_the_start_except_on_raw_topics() -> None:
    """Intake's dead letters and de-duplication changelog below their registry limit would abort intake's
    transactions for ever, notify's ledger at the broker's default would refuse a parked webhook and then every entry
    of its partition (the idempotent producer's sequence broken): refused; above it, or on a raw topic (its sources
    are answered the refusal): a warning."""
    for spec in (DLQ_INTAKE, INTAKE_DEDUP, NOTIFY_LEDGER):
        wanted = int(spec.config["max.message.bytes"])
        assert danger(Drift(spec.name, "max.message.bytes", str(wanted - 1), str(wanted)), spec.kind)
        assert danger(Drift(spec.name, "max.message.bytes", "1048588", str(wanted)), spec.kind)
        assert danger(Drift(spec.name, "max.message.bytes", str(wanted + 1), str(wanted)), spec.kind) is None
    raw_limit = RAW_DOSSIER.config["max.message.bytes"]
    assert danger(Drift(RAW_DOSSIER.name, "max.message.bytes", "1048588", raw_limit), RAW_DOSSIER.kind) is None


def test_retention_and_segment_drifts_only_warn() -> None:
    """How long records stay (retention, segments) does not stop a service: warned about and counted only."""
    for key in ("retention.ms", "segment.ms", "min.compaction.lag.ms"):
        assert danger(Drift(INTAKE_DEDUP.name, key, "1", "2"), Kind.INTERNAL) is None


def test_an_alteration_keeps_keys_set_by_hand_under_the_registry_keys() -> None:
    """AlterConfigs replaces a topic's whole dynamic config: the hand-set `retention.bytes` is sent back, the
    registry's keys win over the topic's own."""
    own = {"retention.bytes": "5000000000", "retention.ms": "3600000"}
    assert overlaid(INTAKE_DEDUP, own) == {"retention.bytes": "5000000000", **INTAKE_DEDUP.config}


def test_the_keys_set_on_a_topic_are_those_of_a_dynamic_topic_source() -> None:
    """v1+: only `config_source` DYNAMIC_TOPIC_CONFIG is the topic's own (not a broker's static setting, not a
    default); v0, which has no source, counts every key not default."""
    v1 = [("retention.bytes", "5000000000", False, DYNAMIC_TOPIC_CONFIG, False, []),
          ("max.message.bytes", "10485760", False, STATIC_BROKER, False, []),
          ("segment.ms", "604800000", False, DEFAULT, False, [])]
    config = described(v1, version=2)
    assert config.own == {"retention.bytes": "5000000000"}
    assert config.values == {"retention.bytes": "5000000000", "max.message.bytes": "10485760",
                             "segment.ms": "604800000"}
    v0 = [("retention.bytes", "5000000000", False, False, False), ("segment.ms", "604800000", False, True, False)]
    assert described(v0, version=0).own == {"retention.bytes": "5000000000"}


def test_every_topic_a_subscriber_reads_says_how_long_it_keeps_records() -> None:
    """The topics downstream applications read (ADR 0030) carry their retention in the registry, which topics create
    sets, the start checks and AsyncAPI publishes; not the cluster's default (downstream audit: 7 days, said nowhere).
    The snapshots are compacted by commune, so the topic is every commune's newest."""
    for spec in PUBLISHED:
        assert int(spec.config["retention.ms"]) >= 7 * 24 * 3600 * 1000, spec.name
    assert "compact" in METRICS_SNAPSHOTS.config["cleanup.policy"]
