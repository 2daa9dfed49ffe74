"""infra/compose.yaml, the Dockerfile and the deployment docs agree with the code: ports, env names, topics."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from schemas.topics import MAX_RECORD_BYTES, PARTITIONS, TOPICS

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "infra/compose.yaml").read_text(encoding="utf-8"))
SHARED = {"KAFKA_BOOTSTRAP"}
SERVICES = [n for n, s in COMPOSE["services"].items() if str(s.get("command", [""])[0]).startswith("services.")]


def settings_class(module: str) -> type[BaseSettings] | None:
    try:
        mod = importlib.import_module(f"{module}.settings")
    except ModuleNotFoundError:
        return None
    found = [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, BaseSettings)
             and c is not BaseSettings and c.__module__ == mod.__name__]
    return found[0] if found else None


def env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = {(prefix + n).upper() for n in cls.model_fields}
    for field in cls.model_fields.values():
        alias = field.validation_alias
        names |= {str(c).upper() for c in getattr(alias, "choices", [alias] if isinstance(alias, str) else [])}
    return names


def published(service: dict[str, Any]) -> dict[int, int]:
    out = {}
    for spec in service.get("ports", []):
        *_, host, container = str(spec).split(":")
        out[int(container)] = int(host)
    return out


def test_compose_services_are_the_python_services() -> None:
    """Intake, notify, metrics and the gateway each run their `python -m services.<name>` entry point."""
    assert set(SERVICES) == {"intake", "notify", "metrics", "gateway"}
    for name in SERVICES:
        assert COMPOSE["services"][name]["command"] == [f"services.{name}"]


@pytest.mark.parametrize("name", SERVICES)
def test_environment_names_and_ports_match_the_settings_class(name: str) -> None:
    """Every env var is a field (or alias) of the service's settings class; published ports are its ports."""
    cls = settings_class(f"services.{name}")
    if cls is None:
        pytest.skip(f"services.{name}.settings does not exist yet")
    service = COMPOSE["services"][name]
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    known = env_names(cls) | SHARED
    assert set(env) <= known, f"unknown variables for {cls.__name__}: {sorted(set(env) - known)}"
    prefix = cls.model_config.get("env_prefix", "")
    ports = {}
    for field, info in cls.model_fields.items():
        if field in ("port", "metrics_port"):
            ports[int(env.get((prefix + field).upper(), info.default))] = field
    assert ports, f"{cls.__name__} has no port/metrics_port"
    assert published(service) == {p: p for p in ports}, "container and host ports are the settings' ports"


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
    """The one-shot `topics` service runs `commune-bus topics create`, which reads schemas.topics."""
    topics = COMPOSE["services"]["topics"]
    assert topics["entrypoint"] == ["commune-bus", "topics", "create"]
    for name in [n for n in SERVICES]:
        assert COMPOSE["services"][name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("doc", ["infra/compose.yaml", "infra/cluster.md", "docs/integrators.md", "schemas/asyncapi.yaml"])
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


def test_prometheus_scrapes_the_metrics_ports() -> None:
    """Prometheus targets are the compose services on their published metrics ports."""
    prom = yaml.safe_load((ROOT / "infra/compose/prometheus.yml").read_text(encoding="utf-8"))
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{n}:{p}" for n in ("intake", "notify", "metrics") for p in published(COMPOSE["services"][n])}
    assert targets == expected


def test_dockerfile_copies_existing_paths_and_exposes_service_ports() -> None:
    """Every COPY source exists; EXPOSE covers every port compose publishes for the services."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (ROOT / src).exists(), src
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, flags=re.M) for p in line.split()}
    assert {p for n in SERVICES for p in published(COMPOSE["services"][n])} <= exposed


def test_integrator_guide_examples_are_valid_events() -> None:
    """The guide's copy-paste canonical event and kcat portal dossier pass validation as written."""
    from services.gateway.batch import check

    text = (ROOT / "docs/integrators.md").read_text(encoding="utf-8")
    canonical = re.search(r"```json\n(.*?)```", text, flags=re.S)
    portal = re.search(r"echo '(\{.*?\})'", text)
    assert canonical and portal
    checked = check([canonical.group(1).encode(), portal.group(1).encode()], commune="02269")
    assert checked.errors == [] and len(checked.events) == 2
