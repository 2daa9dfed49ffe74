"""infra/prometheus and infra/grafana as code: promtool checks and unit tests, dashboards generated from code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra/prometheus"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


PROMTOOL_TIMEOUT_S = 240
"""`promtool test rules` evaluates every rule at each step of a scenario: 40-85 s on two loaded cores (a fresh-clone CI
run timed out at 60 s). A bound against a hang, not a speed check, inside pytest-timeout's 300 s."""
RULE_TESTS = ("rules_test.yml", "days_test.yml", "windows_test.yml")
"""The promtool unit test files of infra/prometheus/tests: scenarios of minutes and hours evaluated every minute,
scenarios of days (CommuneSilent's working days) and of weeks (the 7-day rates) every 5 minutes. Each file runs as a
test of its own, within its own timeout."""


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=ROOT, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S)


@needs_promtool
def test_promtool_check_rules_and_config() -> None:
    """`promtool check rules` accepts every rule file and `check config` the scrape config that loads them."""
    rules = promtool("check", "rules", *map(str, sorted((PROM / "rules").glob("*.yml"))))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "--syntax-only", str(PROM / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
@pytest.mark.parametrize("tests", RULE_TESTS)
def test_promtool_unit_tests_of_rules_and_alerts(tests: str) -> None:
    """`promtool test rules`: rates sum over workers; each alert fires on its scenario and not before."""
    result = promtool("test", "rules", str(PROM / "tests" / tests))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_has_a_promtool_scenario() -> None:
    """No alert rule ships without a firing scenario in the promtool tests."""
    import yaml

    alerts = {r["alert"] for g in yaml.safe_load((PROM / "rules/alerts.yml").read_text())["groups"]
              for r in g["rules"]}
    tested = {t["alertname"] for tests in RULE_TESTS
              for case in yaml.safe_load((PROM / "tests" / tests).read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts == tested == {"CommuneOnTimeRateLow", "OverdueBacklogRising", "DeadLettersSpiking",
                                "ConsumerLagGrowing", "ConsumerBacklogPersistent", "CommuneSilent",
                                "InternalErrorDeadLetters",
                                "NotifyDrainTimedOut", "GatewayRequestsFailing", "ServiceNotReady",
                                "CanonicalRecordsUnreadable", "SealedContactsUnopenable", "ServiceRestarting",
                                "BrokerLostRepeatedly",
                                "CertificateExpiresSoon", "CertificateExpired", "ServiceDown", "NotificationsFailing",
                                "KeyRecordsUnreadable", "DeadLetterShareHigh", "ErasureNoticeWaiting",
                                "ErasureMarkUnreadable", "WebhookSubscriberFailing", "StoredRecordsSkipped"}


RECORDED_NAME = re.compile(r"(?<![\w:])([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)")
"""A recording rule's name (`level:metric:operations`) in a query."""


def test_dashboards_and_alerts_read_only_recorded_rules() -> None:
    """Every `level:metric:operations` name a panel or an alert queries is a recording rule: a misspelt one only
    gives an empty panel or an alert that never fires (the end-to-end test cannot see the 7-day rules, which need a
    week of history)."""
    import yaml

    recorded = {r["record"] for g in yaml.safe_load((PROM / "rules/recording.yml").read_text())["groups"]
                for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in yaml.safe_load((PROM / "rules/alerts.yml").read_text())["groups"] for r in g["rules"]]
    for text in (ROOT / "infra/grafana/dashboards").glob("*.json"):
        board = json.loads(text.read_text(encoding="utf-8"))
        exprs += [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in RECORDED_NAME.findall(e)}
    assert {"commune:commune_dossiers_on_time:ratio7d", "job:commune_consumer_lag:sum"} <= used
    assert used - recorded == set()


def test_dashboard_json_is_what_the_code_generates() -> None:
    """infra/grafana/dashboards/*.json are up to date with infra/grafana/dashboards.py."""
    sys.path.insert(0, str(ROOT / "infra/grafana"))
    try:
        import dashboards
    finally:
        sys.path.pop(0)
    generated = dashboards.render_all()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "infra/grafana/dashboards").glob("*.json")}
    assert on_disk == generated
    for text in generated.values():
        board = json.loads(text)
        assert board["panels"] and all(p["targets"] and p["datasource"]["uid"] == "prometheus" for p in board["panels"])


@needs_promtool
def test_exposition_passes_promtool_metric_lint() -> None:
    """/metrics text (commune figures + worker health) is valid exposition with conventional names and units."""
    from prometheus_client import REGISTRY, generate_latest

    from services.metrics.exposition import render
    from services.metrics.partition import PartitionState
    from tests.metrics.golden import NOW, event_set

    part = PartitionState(0, {})
    for event in event_set():
        part.apply(event)
    text = render([part], NOW) + generate_latest(REGISTRY).decode()
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    assert "commune_dossier_processing_duration_seconds_bucket" in text and "commune_dossiers_overdue" in text


@needs_promtool
def test_received_in_the_past_hour_counts_a_partition_moved_between_workers_and_a_new_channel(
        tmp_path: Path) -> None:
    """The province panel "Received in the past hour, by channel", as the dashboard JSON holds it: commune 02269's
    partition moves from worker a to worker b at 30 min (restored by 36 min), 1 counter dossier a minute all hour
    (61 from its start to its end), and its first online dossiers (5) come at 40 min. delta() of each series gave
    56 counter and 0 online (audit)."""
    import yaml

    board = json.loads((ROOT / "infra/grafana/dashboards/province-overview.json").read_text(encoding="utf-8"))
    [expr] = [t["expr"] for p in board["panels"] if p["title"] == "Received in the past hour, by channel"
              for t in p["targets"]]
    labels = 'province="08",commune="02269"'
    scenario = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f'commune_dossiers_received{{{labels},channel="counter",instance="a"}}',
             "values": "100+1x30 _x30"},
            {"series": f'commune_dossiers_received{{{labels},channel="counter",instance="b"}}',
             "values": "_x35 136+1x25"},
            {"series": f'commune_dossiers_received{{{labels},channel="online",instance="b"}}',
             "values": "_x40 5x20"},
        ],
        "promql_expr_test": [{"expr": expr.replace("$province", "08"), "eval_time": "60m", "exp_samples": [
            {"labels": '{channel="counter"}', "value": 61}, {"labels": '{channel="online"}', "value": 5}]}],
    }]}
    path = tmp_path / "past_hour_test.yml"
    path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
