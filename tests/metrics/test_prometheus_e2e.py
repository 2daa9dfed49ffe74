"""End to end: simulator -> intake -> metrics on the real broker, scraped by Debian's Prometheus with our rules.

Every panel query of every shipped Grafana dashboard and every recording rule
is evaluated through Prometheus' HTTP API and must return data, but those of the
7-day rates, which need a week of history: they must evaluate without error (the
promtool scenarios of infra/prometheus/tests/windows_test.yml test their values,
and tests/metrics/test_prometheus_rules.py that every rule name queried exists).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integrator.conftest import API_KEY, REGISTRY, SECRETS, start_gateway
from tests.kafkatools import ROOT, free_port, start_service, stop_service
from tests.samples import canonical_dossier
from tests.waiting import eventually

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus is not installed"),
]
PROVINCE = "20"  # Lạng Sơn, the simulator's default
NAMES = ("intake", "metrics", "gateway", "prometheus")


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return result if isinstance(result, list) else [result]


def label_values(port: int, label: str, match: str) -> list[str]:
    url = f"http://127.0.0.1:{port}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(url, timeout=10) as resp:
        return list(json.load(resp)["data"])


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) for every target of every shipped dashboard, plus its variable queries."""
    out = []
    for path in sorted((ROOT / "infra/grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for var in board["templating"]["list"]:
            out.append((path.name, f"variable {var['name']}", var["query"]["query"]))
        for panel in board["panels"]:
            out.extend((path.name, panel["title"], t["expr"]) for t in panel["targets"])
    return out


def recording_rules() -> list[str]:
    groups = yaml.safe_load((ROOT / "infra/prometheus/rules/recording.yml").read_text())["groups"]
    return [r["record"] for g in groups for r in g["rules"]]


NEEDS_A_WEEK = re.compile(r":\w+7d\b")
"""A query of a 7-day rate (`commune:commune_dossiers_on_time:ratio7d`): no value before a week of history."""


def substitute(expr: str, commune: str) -> str:
    return (expr.replace("$province", PROVINCE).replace("$commune", commune)
            .replace("$__rate_interval", "30s"))


def has_data(port: int, expr: str) -> bool:
    """Whether `expr` returns data; for a 7-day rate, whether it evaluates (`query` asserts success)."""
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", expr)
    if m:
        return bool(label_values(port, m.group(2), m.group(1)))
    result = query(port, expr)
    return bool(result) or NEEDS_A_WEEK.search(expr) is not None


def prometheus_config(path: Path, targets: dict[str, int]) -> None:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((ROOT / "infra/prometheus/rules").glob("*.yml"))],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                           for job, port in targets.items()],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def log_tail(folder: Path, name: str) -> str:
    """The end of `name`'s log (the gateway's is named after its port)."""
    return "".join(p.read_text(errors="replace")[-2000:] for p in sorted(folder.glob(f"{name}*.log")))


def post_to_gateway(url: str, headers: dict[str, str]) -> int:
    """POST one canonical dossier; the gateway's status."""
    body = json.dumps(canonical_dossier("e2e-" + uuid.uuid4().hex[:12])).encode()
    request = urllib.request.Request(url + "/v1/events", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_every_dashboard_query_and_recording_rule_returns_data(kafka_topics: str, unique: str, tmp_path: Path) -> None:
    """Prometheus scraping intake, metrics (fed by the simulator) and the gateway (its /metrics port; one request
    accepted, one refused) answers every panel query and rule."""
    namespace = f"e2e{unique}"
    ports = {"intake": free_port(), "metrics": free_port(), "gateway": free_port()}
    prom_port = free_port()
    env = {"KAFKA_BOOTSTRAP": kafka_topics}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_service("services.intake", {**env, "INTAKE_NAMESPACE": namespace,
                                                       "INTAKE_HTTP_PORT": str(ports["intake"])},
                                   tmp_path / "intake.log"))
        procs.append(start_service("services.metrics", {**env, "METRICS_NAMESPACE": namespace,
                                                        "METRICS_HTTP_PORT": str(ports["metrics"]),
                                                        "METRICS_STATE_DIR": str(tmp_path / "state"),
                                                        "METRICS_SNAPSHOT_INTERVAL_S": "5"},
                                   tmp_path / "metrics.log"))
        (tmp_path / "sources.yaml").write_text(REGISTRY, encoding="utf-8")
        (tmp_path / "secrets.yaml").write_text(SECRETS, encoding="utf-8")
        gateway, gateway_url = start_gateway(tmp_path, kafka_topics, namespace,
                                             GATEWAY_HTTP_PORT=str(ports["gateway"]))
        procs.append(gateway)
        assert post_to_gateway(gateway_url, {"X-Api-Key": API_KEY}) == 202
        assert post_to_gateway(gateway_url, {"X-Api-Key": "not-a-key"}) == 401
        prometheus_config(tmp_path / "prometheus.yml", ports)
        with open(tmp_path / "prometheus.log", "ab") as prom_log:  # the child keeps its own descriptor
            procs.append(subprocess.Popen(
                [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 "--log.level=warn"],
                stdout=prom_log, stderr=subprocess.STDOUT))
        simulator = subprocess.run(
            [sys.executable, "-m", "services.simulator", "--province", PROVINCE, "--rate", "300", "--duration", "15",
             "--invalid-share", "0.05", "--namespace", namespace, "--seed", "1", "--bootstrap", kafka_topics],
            cwd=ROOT, capture_output=True, timeout=90)
        assert simulator.returncode == 0, simulator.stderr.decode()[-2000:]

        def every_query_has_data() -> bool:
            for proc, name in zip(procs, NAMES, strict=True):
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited: {log_tail(tmp_path, name)}")
            try:
                completed = f'commune_dossiers_completed{{province="{PROVINCE}"}}'
                top = query(prom_port, f"topk(1, sum by (commune) ({completed}))")
                commune = top[0]["metric"]["commune"] if top else ""
                checks = [(d, p, substitute(e, commune)) for d, p, e in dashboard_queries()]
                checks += [("recording rule", r, r) for r in recording_rules()]
                missing = [c for c in checks if not commune or not has_data(prom_port, c[2])]
            except OSError:
                missing, commune = [("prometheus", "not answering yet", "")], ""
            assert not missing, f"queries without data (commune {commune}): {missing}"
            return True

        eventually(every_query_has_data, timeout=90, interval=2, what="every dashboard query and rule with data")
        for proc, name in zip(procs, NAMES, strict=True):
            assert proc.poll() is None, f"{name} exited: {log_tail(tmp_path, name)}"

        rules = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=10))
        unhealthy = [r["name"] for g in rules["data"]["groups"] for r in g["rules"] if r["health"] != "ok"]
        assert not unhealthy
        assert len(dashboard_queries()) >= 40
    finally:
        for proc in reversed(procs):
            stop_service(proc)
