"""What `make demo` starts: one entry per process, with its environment, its probes and where to look."""

from __future__ import annotations

import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.demo.settings import DemoSettings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "infra/prometheus/prometheus.yml"
SUBSCRIBERS = ROOT / "infra/notify/subscribers.example.toml"
GATEWAY_SECRETS_EXAMPLE = ROOT / "infra/gateway-secrets.example.yaml"
DEFAULT_PROVIDERS = "127.0.0.1:8025"


@dataclass(frozen=True)
class Child:
    """One process of the demo. `probe` is the base URL of its /readyz and /metrics (None: it serves none)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, str] = field(default_factory=dict)  # port -> what listens on it, checked free before the start
    probe: str | None = None
    ready_path: str = "/readyz"
    where: str = ""


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def wants_prometheus(s: DemoSettings) -> bool:
    return s.prometheus if s.prometheus is not None else shutil.which("prometheus") is not None


def plan(s: DemoSettings, python: str = sys.executable) -> list[Child]:
    """Every process of the demo, in start order (providers before notify, intake before the simulator)."""
    def scoped(prefix: str) -> dict[str, str]:
        return {f"{prefix}_NAMESPACE": s.namespace} if s.namespace else {}

    providers = _url(s.providers_port)
    keys = s.state_dir / "keys"  # intake's and notify's key stores, kept across restarts (ADR 0034)
    children = [
        Child("intake", [python, "-m", "services.intake"],
              {**scoped("INTAKE"), "INTAKE_HTTP_PORT": str(s.intake_port), "PRIVACY_STATE_DIR": str(keys)},
              {s.intake_port: "intake /metrics"}, _url(s.intake_port),
              where=f"intake: {_url(s.intake_port)}/metrics (/healthz, /readyz)"),
        Child("metrics", [python, "-m", "services.metrics"],
              {**scoped("METRICS"), "METRICS_HTTP_PORT": str(s.metrics_port),
               "METRICS_STATE_DIR": str(s.state_dir / "metrics")},
              {s.metrics_port: "metrics /metrics"}, _url(s.metrics_port),
              where=f"indicators: {_url(s.metrics_port)}/metrics; dashboards: infra/grafana"),
        Child("notify-providers", [python, "-m", "services.notify.fake_providers", "--port", str(s.providers_port),
                                   "--smtp-port", str(s.smtp_port)], {},
              {s.providers_port: "fake providers", s.smtp_port: "fake SMTP sink"}, None,
              where=f"fake SMS/Zalo/webhook providers: {providers}/stats"),
        Child("notify", [python, "-m", "services.notify"],
              {**scoped("NOTIFY"), "NOTIFY_HTTP_PORT": str(s.notify_port), "NOTIFY_SMS_URL": providers,
               "NOTIFY_ZALO_URL": providers, "NOTIFY_SMTP_PORT": str(s.smtp_port),
               "NOTIFY_DIRECTORY_FILE": str(ROOT / "infra/notify/directory.example.toml"),
               "NOTIFY_SUBSCRIBERS_FILE": str(subscribers_file(s)),
               "NOTIFY_DEADLINE_WEB_PORT": str(s.notify_deadlines_port), "PRIVACY_STATE_DIR": str(keys)},
              {s.notify_port: "notify /metrics", s.notify_deadlines_port: "notify's deadline tracker /metrics"},
              _url(s.notify_port),
              where=f"notify: {_url(s.notify_port)}/metrics; outcomes: commune.notify.status"),
        Child("gateway", [python, "-m", "services.gateway"],
              {**scoped("GATEWAY"), "GATEWAY_PORT": str(s.gateway_port),
               "GATEWAY_HTTP_PORT": str(s.gateway_metrics_port),
               "GATEWAY_SECRETS_FILE": str(gateway_secrets_file(s))},
              {s.gateway_port: "gateway API", s.gateway_metrics_port: "gateway /metrics"}, _url(s.gateway_port),
              where=f"HTTP ingest: POST {_url(s.gateway_port)}/v1/events, contract {_url(s.gateway_port)}/openapi.json "
                    f"(demo keys: {gateway_secrets_file(s)})"),
        Child("simulator", [python, "-m", "services.simulator", "--rate", f"{s.rate:g}"], scoped("SIMULATOR"),
              where="raw traffic: commune.raw.* (Lạng Sơn communes)"),
    ]
    if wants_prometheus(s):
        children.append(Child(
            "prometheus", ["prometheus", f"--config.file={prometheus_file(s)}",
                           f"--web.listen-address=127.0.0.1:{s.prometheus_port}",
                           f"--storage.tsdb.path={s.state_dir / 'prometheus'}", "--log.level=warn"], {},
            {s.prometheus_port: "Prometheus"}, _url(s.prometheus_port), ready_path="/-/ready",
            where=f"Prometheus: {_url(s.prometheus_port)} (rules: infra/prometheus/rules, alerts at /alerts, "
                  "/classic/alerts on Debian's build)"))
    return children


def subscribers_file(s: DemoSettings) -> Path:
    """The example webhook subscribers, pointed at this demo's fake providers."""
    return s.run_dir / "subscribers.toml"


def gateway_secrets_file(s: DemoSettings) -> Path:
    """The demo gateway's keys: the example's sources, each with a random key of its own (the gateway refuses the
    example's placeholders)."""
    return s.run_dir / "gateway-secrets.yaml"


def prometheus_file(s: DemoSettings) -> Path:
    return s.run_dir / "prometheus.yml"


def write_configs(s: DemoSettings) -> None:
    """The generated files the plan refers to: subscribers and Prometheus' scrape config with this demo's ports."""
    s.run_dir.mkdir(parents=True, exist_ok=True)
    if not gateway_secrets_file(s).exists():  # made once: a client of an earlier demo keeps its key
        example = yaml.safe_load(GATEWAY_SECRETS_EXAMPLE.read_text(encoding="utf-8"))
        keys = {source: {kind: secrets.token_urlsafe(32) for kind in entry} for source, entry in example.items()}
        gateway_secrets_file(s).touch(mode=0o600)
        gateway_secrets_file(s).write_text(yaml.safe_dump(keys, sort_keys=False), encoding="utf-8")
    subscribers_file(s).write_text(SUBSCRIBERS.read_text(encoding="utf-8").replace(
        DEFAULT_PROVIDERS, f"127.0.0.1:{s.providers_port}"), encoding="utf-8")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    ports = {"intake": s.intake_port, "notify": s.notify_port, "notify-deadlines": s.notify_deadlines_port,
             "metrics": s.metrics_port, "gateway": s.gateway_metrics_port}
    for job in config["scrape_configs"]:
        if job["job_name"] in ports:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    prometheus_file(s).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
