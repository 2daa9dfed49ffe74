"""infra/compose.yaml, the Dockerfile and the deployment docs agree with the code: ports, env names, topics."""

from __future__ import annotations

import copy
import importlib
import ipaddress
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from schemas.topics import MAX_RECORD_BYTES, PARTITIONS, TOPICS
from services.privacy.settings import PrivacySettings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "infra/compose.yaml").read_text(encoding="utf-8"))
PROMETHEUS = yaml.safe_load((ROOT / "infra/compose/prometheus.yml").read_text(encoding="utf-8"))
SHARED = {"KAFKA_BOOTSTRAP"} | {f"PRIVACY_{n.upper()}" for n in PrivacySettings.model_fields}
"""Read by every service (`KafkaConnection`) or by those that seal or open personal data (`PrivacySettings`)."""
SERVICES = [n for n, s in COMPOSE["services"].items() if str(s.get("command", [""])[0]).startswith("services.")]


def settings_class(module: str) -> type[BaseSettings]:
    mod = importlib.import_module(f"{module}.settings")
    defined = [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, BaseSettings)
               and c is not BaseSettings and c.__module__ == mod.__name__]
    [found] = [c for c in defined if not any(c in other.__mro__[1:] for other in defined)]  # not a part of another
    return found


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables pydantic-settings reads for `cls`: a field's aliases if it has any, else prefix + name."""
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        names |= {str(c).upper() for c in choices} if choices else {(prefix + name).upper()}
    return names


def published(service: dict[str, Any]) -> dict[int, int]:
    out = {}
    for spec in service.get("ports", []):
        *_, host, container = str(spec).split(":")
        out[int(container)] = int(host)
    return out


def configured(compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> BaseSettings:
    """`services.<name>`'s real settings class built from the container's environment only (as compose runs it)."""
    cls = settings_class(f"services.{name}")
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    with monkeypatch.context() as env:
        for var in os.environ:
            if var.upper().startswith((prefix, "KAFKA_")):
                env.delenv(var)
        for var, value in compose["services"][name].get("environment", {}).items():
            env.setenv(var, str(value))
        return cls()


def http_address(settings: BaseSettings) -> tuple[str, int]:
    """Where the service's HTTP server (/metrics, /healthz, /readyz) listens (the gateway's is not its API)."""
    values = settings.model_dump()
    return values["http_host"], values["http_port"]


def addresses(settings: BaseSettings) -> list[tuple[str, int]]:
    """Every address the service listens on: its HTTP server, and the gateway's API too."""
    values = settings.model_dump()
    return [http_address(settings), *([(values["host"], values["port"])] if "port" in values else [])]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def loopback_bound(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Services whose container would bind an HTTP port to a loopback address (unreachable from Prometheus or,
    the gateway's API, from its clients)."""
    return sorted(n for n in SERVICES
                  if any(is_loopback(host) for host, _ in addresses(configured(compose, n, monkeypatch))))


def scrape_mismatches(compose: dict[str, Any], prometheus: dict[str, Any],
                      monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Prometheus targets and `<service>:<configured HTTP port>` that are not both present (notify's deadline tracker,
    a child process in its container, serves its own on `NOTIFY_DEADLINE_WEB_PORT` when it runs)."""
    targets = {t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    serving = set()
    for n in SERVICES:
        settings = configured(compose, n, monkeypatch)
        values = settings.model_dump()
        ports = [http_address(settings)[1], *([values["deadline_web_port"]] if values.get("deadlines") else [])]
        serving |= {f"{n}:{port}" for port in ports if port}
    return targets ^ serving


def test_compose_services_are_the_python_services() -> None:
    """Intake, notify, metrics and the gateway each run their `python -m services.<name>` entry point."""
    assert set(SERVICES) == {"intake", "notify", "metrics", "gateway"}
    for name in SERVICES:
        assert COMPOSE["services"][name]["command"] == [f"services.{name}"]


@pytest.mark.parametrize("name", SERVICES)
def test_environment_names_and_ports_match_the_settings_class(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every env var is a field (or alias) of the service's settings class; published ports are its HTTP port."""
    cls = settings_class(f"services.{name}")
    service = COMPOSE["services"][name]
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    known = env_names(cls) | SHARED
    assert set(env) <= known, f"unknown variables for {cls.__name__}: {sorted(set(env) - known)}"
    ports = [port for _, port in addresses(configured(COMPOSE, name, monkeypatch))]
    assert all(ports), f"{cls.__name__} serves no HTTP port in its container"
    assert published(service) == {port: port for port in ports}, "container and host ports are the settings' ports"


def test_no_service_binds_its_http_port_to_loopback_in_its_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built from the compose environment, every service's settings bind /metrics etc. beyond 127.0.0.1."""
    assert loopback_bound(COMPOSE, monkeypatch) == []


def test_the_binding_check_finds_a_service_left_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails for a compose file whose services fall back to (or set) a loopback address."""
    broken = copy.deepcopy(COMPOSE)
    del broken["services"]["intake"]["environment"]["INTAKE_HTTP_HOST"]  # the settings' default: 127.0.0.1
    broken["services"]["notify"]["environment"]["NOTIFY_HTTP_HOST"] = "127.0.0.1"
    broken["services"]["gateway"]["environment"]["GATEWAY_HOST"] = "localhost"
    assert loopback_bound(broken, monkeypatch) == ["gateway", "intake", "notify"]
    del broken["services"]["gateway"]["environment"]["GATEWAY_HOST"]
    broken["services"]["gateway"]["environment"]["GATEWAY_HTTP_HOST"] = "127.0.0.1"  # its /metrics
    assert loopback_bound(broken, monkeypatch) == ["gateway", "intake", "notify"]


def test_prometheus_scrapes_every_service_on_its_configured_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """infra/compose/prometheus.yml targets are exactly `<service>:<HTTP port its settings read in compose>`."""
    assert scrape_mismatches(COMPOSE, PROMETHEUS, monkeypatch) == set()


def test_the_scrape_check_finds_a_port_prometheus_does_not_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails when a service's configured port moves and the scrape target does not."""
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["metrics"]["environment"]["METRICS_HTTP_PORT"] = "9203"
    assert scrape_mismatches(broken, PROMETHEUS, monkeypatch) == {"metrics:9103", "metrics:9203"}
    broken["services"]["notify"]["environment"]["NOTIFY_DEADLINE_WEB_PORT"] = "6167"
    assert scrape_mismatches(broken, PROMETHEUS, monkeypatch) == {"metrics:9103", "metrics:9203", "notify:6067",
                                                                  "notify:6167"}


STOP_BUDGETS = {"intake": "services.intake.worker", "notify": "services.notify.app",
                "metrics": "services.metrics.worker", "gateway": "services.gateway.__main__"}
"""Where each service's `stop_budget_s(settings)` is: its worst-case SIGTERM time in a broker outage."""
COMPOSE_STOP_DEFAULT_S = 10.0
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?")


def seconds(duration: str) -> float:
    """A compose duration (`1m30s`, `90s`, `2m`) in seconds."""
    match = DURATION.fullmatch(duration)
    assert match and any(match.groups()), f"not a duration compose reads here: {duration!r}"
    hours, minutes, secs = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + secs


def short_of_budget(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[float, float]]:
    """Services whose grace period (compose's default: 10 s) is shorter than their stop budget, computed from the
    settings as the container reads them (the defaults, and what compose sets): name -> (grace, budget)."""
    short = {}
    for name in SERVICES:
        grace = seconds(str(compose["services"][name].get("stop_grace_period", f"{COMPOSE_STOP_DEFAULT_S:g}s")))
        budget = importlib.import_module(STOP_BUDGETS[name]).stop_budget_s(configured(compose, name, monkeypatch))
        if grace < budget:
            short[name] = (grace, budget)
    return short


def test_each_service_is_given_its_worst_case_stop_before_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM in a broker outage takes each service up to its stop budget (commit and transaction timeouts, each
    client's bounded stop): compose waits at least that long before SIGKILL, which would cut a drain short."""
    assert set(STOP_BUDGETS) == set(SERVICES)
    assert short_of_budget(COMPOSE, monkeypatch) == {}


def test_the_grace_check_finds_a_longer_timeout_or_a_missing_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails when a stop deadline grows and the compose file is left as it is, or a grace period
    goes (a longer timeout alone does not lengthen a stop: `stop_deadline_s` bounds it)."""
    assert seconds("1m30s") == seconds("90s") == 90 and seconds("2m") == 120
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["intake"]["environment"]["INTAKE_TRANSACTION_TIMEOUT_MS"] = "30000"
    assert short_of_budget(broken, monkeypatch) == {}
    broken["services"]["intake"]["environment"]["INTAKE_STOP_DEADLINE_S"] = "40"
    del broken["services"]["notify"]["stop_grace_period"]
    short = short_of_budget(broken, monkeypatch)
    assert set(short) == {"intake", "notify"} and short["notify"][0] == COMPOSE_STOP_DEFAULT_S


def test_kafka_matches_the_local_broker_and_the_registry() -> None:
    """Host port 9092 and record size limit as infra/kafka/server.properties; partitions as the registry."""
    kafka = COMPOSE["services"]["kafka"]
    env = kafka["environment"]
    local = dict(line.split("=", 1) for line in (ROOT / "infra/kafka/server.properties").read_text().splitlines()
                 if "=" in line and not line.startswith("#"))
    local_port = int(local["listeners"].split("PLAINTEXT://127.0.0.1:")[1].split(",")[0])
    assert published(kafka) == {local_port: local_port}
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == int(local["message.max.bytes"]) >= MAX_RECORD_BYTES
    assert int(env["KAFKA_NUM_PARTITIONS"]) == PARTITIONS == int(local["num.partitions"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == local["auto.create.topics.enable"] == "false"
    internal = env["KAFKA_ADVERTISED_LISTENERS"].split("INTERNAL://")[1].split(",")[0]
    for name in [*SERVICES, "topics"]:
        assert COMPOSE["services"][name]["environment"]["KAFKA_BOOTSTRAP"] == internal


def test_topics_are_created_by_the_registry_command() -> None:
    """The one-shot `topics` service runs `commune-bus topics create`, which reads schemas.topics, with the source
    registry the services read, so each source's bound raw topics exist too (review: the default path is the
    package's, under site-packages once installed, where no registry is)."""
    topics = COMPOSE["services"]["topics"]
    assert topics["entrypoint"] == ["commune-bus", "topics", "create"]
    sources = topics["command"][topics["command"].index("--sources") + 1]
    assert sources == COMPOSE["services"]["intake"]["environment"]["INTAKE_SOURCES_FILE"]
    for name in [n for n in SERVICES]:
        assert COMPOSE["services"][name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("doc", ["infra/compose.yaml", "infra/cluster.md", "docs/integrators.md",
                                 "schemas/asyncapi.yaml"])
def test_every_topic_name_mentioned_is_a_registry_topic(doc: str) -> None:
    """Topic names written in deployment docs and contracts exist in schemas.topics (no stale names)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    mentioned = set(re.findall(r"\bcommune\.(?:raw|events|dlq|intake|notify|metrics)\.[a-z-]+\b", text))
    assert mentioned <= {t.name for t in TOPICS}, sorted(mentioned)


def test_cluster_guide_lists_every_topic_and_group() -> None:
    """infra/cluster.md names every registry topic and consumer group."""
    from schemas.topics import Group

    text = (ROOT / "infra/cluster.md").read_text(encoding="utf-8")
    assert all(t.name in text for t in TOPICS)
    assert all(g.value in text for g in Group)


def test_dockerfile_copies_existing_paths_and_exposes_service_ports() -> None:
    """Every COPY source exists; EXPOSE covers every port compose publishes for the services."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        *sources, _ = line.split()
        assert sources and all((ROOT / src).exists() for src in sources), line
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, flags=re.M) for p in line.split()}
    assert {p for n in SERVICES for p in published(COMPOSE["services"][n])} <= exposed


WRITABLE = (Path("/tmp"), Path(tempfile.gettempdir()))
"""Where the image's user (uid 10001, `USER commune-bus`) may write without a volume: the temporary folder (the
system's, as a default computed here reads it, is /tmp in the image); the Dockerfile's WORKDIR and everything copied
under it belong to root."""


def unwritable_state_dirs(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`<service>: <folder>` for each state folder (a setting named `state_dir`, as its container's environment sets
    it) that the container's user could not create: not under `WRITABLE` nor a volume the service mounts (a relative
    one lands in the root-owned WORKDIR). None: the system's temporary folder."""
    workdir = Path(re.findall(r"^WORKDIR (\S+)$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), flags=re.M)[-1])
    found = []
    for name in SERVICES:
        mounts = [Path(str(v).split(":")[1]) for v in compose["services"][name].get("volumes", [])]
        values = configured(compose, name, monkeypatch).model_dump()
        for field, value in values.items():
            if field.endswith("state_dir") and value is not None:
                folder = workdir / value  # a relative folder is under the working directory; an absolute one is itself
                if not any(folder.is_relative_to(place) for place in (*WRITABLE, *mounts)):
                    found.append(f"{name}: {folder}")
    return found


def test_every_state_folder_is_writable_in_its_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics' RocksDB stores (and any service's state folder) go where the image's user may write."""
    assert unwritable_state_dirs(COMPOSE, monkeypatch) == []


def test_the_state_folder_check_finds_one_under_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative folder (metrics' former default, .state/metrics) or one under /app is found; a volume's is not."""
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["metrics"]["environment"]["METRICS_STATE_DIR"] = ".state/metrics"
    broken["services"]["notify"]["environment"]["NOTIFY_STATE_DIR"] = "/app/state"
    assert unwritable_state_dirs(broken, monkeypatch) == ["notify: /app/state", "metrics: /app/.state/metrics"]
    broken["services"]["metrics"]["volumes"] = ["metrics-state:/app/.state"]
    assert unwritable_state_dirs(broken, monkeypatch) == ["notify: /app/state"]


def test_integrator_guide_examples_are_valid_events() -> None:
    """The guide's copy-paste canonical event and kcat portal dossier pass validation as written."""
    from services.gateway.batch import check

    text = (ROOT / "docs/integrators.md").read_text(encoding="utf-8")
    canonical = re.search(r"```json\n(.*?)```", text, flags=re.S)
    portal = re.search(r"echo '(\{.*?\})'", text)
    assert canonical and portal
    checked = check([canonical.group(1).encode(), portal.group(1).encode()], commune="02269")
    assert checked.errors == [] and len(checked.events) == 2
