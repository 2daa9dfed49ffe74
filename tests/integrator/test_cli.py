"""The installed `commune-bus` command: offline validate, publish to raw, tail canonical, topics create."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import METRICS_CHANGELOG, TOPICS, scoped
from services.cli.options import connection, resolve_topic
from services.common import clients
from services.common.acls import SOURCES_FILE
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.common.topics_cli import registry_topics
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.integrator.conftest import CLI, Stack
from tests.kafkatools import kafka_env
from tests.samples import canonical_dossier, portal_dossier, visit_completed, with_data


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


@pytest.mark.unit
def test_registry_topic_names_are_resolved_inside_the_namespace() -> None:
    """tail's TOPIC: a registry name goes into the namespace (the one rule); a namespaced or foreign one does not."""
    assert resolve_topic("commune.events.dossier", "X") == "X.commune.events.dossier"
    assert resolve_topic("commune.events.dossier", "") == "commune.events.dossier"
    assert resolve_topic("X.commune.events.dossier", "X") == "X.commune.events.dossier"
    assert resolve_topic("other.topic", "X") == "other.topic"


@pytest.mark.unit
def test_bootstrap_option_keeps_the_rest_of_the_kafka_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """--bootstrap wins over KAFKA_BOOTSTRAP; TLS/SASL settings still come from KAFKA_* like every service's."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "env-broker:9092")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "cli")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "cli-password-from-a-vault")
    conn = connection("flag-broker:9093")
    assert (conn.bootstrap, conn.security_protocol, conn.sasl_username) == ("flag-broker:9093", "SASL_SSL", "cli")


@pytest.mark.unit
def test_validate_prints_one_line_per_bad_record_and_fails(tmp_path: Path) -> None:
    """validate: exit 1 and one line per bad record (its line, reason, field path) for an NDJSON file with 2 bad of
    4."""
    rows = [canonical_dossier(), with_data(canonical_dossier("b"), status=9), visit_completed(),
            {**canonical_dossier("c"), "province": "01"}]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    result = run("validate", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: line 2: [missing_field] data.ended_at")
    assert lines[1].startswith(f"{path}: line 4: [province_mismatch] province")
    assert "4 records, 2 valid, 2 invalid" in result.stderr


@pytest.mark.unit
def test_validate_passes_valid_json_array_and_portal_with_commune(tmp_path: Path) -> None:
    """validate: exit 0 for a valid JSON array; portal records validate with --commune, fail without it."""
    path = tmp_path / "ok.json"
    path.write_text(json.dumps([canonical_dossier(), visit_completed()]), encoding="utf-8")
    assert run("validate", str(path)).returncode == 0
    portal = tmp_path / "portal.json"
    portal.write_text(json.dumps(portal_dossier()), encoding="utf-8")
    assert run("validate", str(portal), "--commune", "02269").returncode == 0
    missing = run("validate", str(portal))
    assert missing.returncode == 1 and "[missing_commune_header] commune-code" in missing.stdout


@pytest.mark.kafka
def test_publish_then_tail_shows_the_canonical_event_with_its_headers(stack: Stack, tmp_path: Path) -> None:
    """publish FILE --family dossier goes through intake; tail prints the canonical event with ce_* headers."""
    code = "CLI-" + uuid.uuid4().hex[:8]
    path = tmp_path / "portal.ndjson"
    path.write_bytes(orjson.dumps(portal_dossier(code)) + b"\n")
    published = stack.cli("publish", str(path), "--family", "dossier", "--commune", "02269")
    assert "1 record acknowledged" in published.stderr
    out = ""
    for _ in range(20):
        out = stack.cli("tail", "commune.events.dossier", "--from-beginning", "--idle", "1.5").stdout
        if code in out:
            break
    assert code in out and "ce_type" in out and "vn.communebus.dossier.status-changed.v1" in out


@pytest.mark.kafka
def test_topics_create_makes_the_registry_topics_of_a_namespace(kafka_bootstrap: str, unique: str) -> None:
    """topics create: every registry topic (and the replay log) exists afterwards, and each source's bound raw topics
    (downstream audit: they were not, and intake as its own principal, which may not create them, waited for them
    for ever); a second run creates none."""
    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "COLUMNS": "200", "PATH": "/usr/bin:/bin", **kafka_env()}
    first = subprocess.run([CLI, "topics", "create", "--namespace", f"tc{unique}"], capture_output=True, text=True,
                           env=env, timeout=60)
    bound = [bound_topic(f, e, f"tc{unique}").name for e in load_registry(SOURCES_FILE).sources for f in e.families]
    assert f"{len(TOPICS) + len(bound)} topics created" in first.stdout, first.stdout + first.stderr
    assert bound and all(name in first.stdout for name in bound)
    second = subprocess.run([CLI, "topics", "create", "--namespace", f"tc{unique}"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "0 topics created" in second.stdout
    assert "warning" not in second.stderr, second.stderr
    # asked for 3 replicas where they have 1 (grown from one broker to a cluster: the walkthrough's left-alone), it
    # creates none and said nothing, as if they had 3: now it names each and how to change them
    third = subprocess.run([CLI, "topics", "create", "--namespace", f"tc{unique}", "--replication-factor", "3"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert third.returncode == 0 and "0 topics created" in third.stdout, third.stdout + third.stderr
    warning = " ".join(third.stderr.split())
    named = [t.name for t in registry_topics(f"tc{unique}", SOURCES_FILE)]
    assert all(f"{name}: 1 replica, not 3" in warning for name in named), warning
    assert "kafka-reassign-partitions.sh" in warning
    one = subprocess.run([CLI, "topics", "create", "--namespace", f"tc{unique}", "--replication-factor", "1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert "warning" not in one.stderr, one.stderr


@pytest.mark.kafka
def test_topics_create_gives_existing_topics_the_registry_config_and_keeps_keys_set_by_hand(
        kafka_bootstrap: str, unique: str) -> None:
    """An upgrade's registry fixes reach existing topics: a metrics changelog made delete-only, with a size bound set
    by hand, is compacted again by topics create, which prints the key with its value before and the registry's, and
    keeps the hand-set key (without it, every service refuses to start on that changelog)."""
    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "COLUMNS": "200", "PATH": "/usr/bin:/bin", **kafka_env()}
    ns = f"tr{unique}"
    changelog = scoped(METRICS_CHANGELOG, ns).name
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    by_hand = {"cleanup.policy": "delete", "retention.bytes": "5000000000"}
    asyncio.run(ensure_topics(conn, [replace(scoped(METRICS_CHANGELOG, ns), config=by_hand)]))
    result = subprocess.run([CLI, "topics", "create", "--namespace", ns], capture_output=True, text=True, env=env,
                            timeout=60)
    assert f"{changelog}: cleanup.policy delete -> compact" in result.stdout, result.stdout + result.stderr
    assert f"{len(registry_topics(ns)) - 1} topics created" in result.stdout

    async def described() -> dict[str, str]:
        client = clients.admin(conn)
        await client.start()
        try:
            [response] = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog, {
                "cleanup.policy": "", "retention.bytes": ""})])
        finally:
            await client.close()
        return {entry[0]: entry[1] for entry in response.resources[0][4]}

    assert asyncio.run(described()) == {"cleanup.policy": "compact", "retention.bytes": "5000000000"}


@pytest.mark.kafka
def test_simulate_writes_raw_traffic_for_the_province(kafka_bootstrap: str, unique: str) -> None:
    """simulate --duration 2 runs the simulator to completion and its records land on the namespace's raw topics."""
    import asyncio

    from tests.kafkatools import read_all

    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "COLUMNS": "200", "PATH": "/usr/bin:/bin", **kafka_env()}
    ns = f"sim{unique}"
    subprocess.run([CLI, "topics", "create", "--namespace", ns], env=env, check=True, capture_output=True, timeout=60)
    result = subprocess.run([CLI, "simulate", "--province", "20", "--rate", "20", "--duration", "2",
                             "--invalid-share", "0", "--seed", "1", "--namespace", ns],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "simulated province 20 at 20.0/s for 2 s" in result.stderr  # its duration, not its start (7 s for 5)
    records = [r for family in ("dossier", "mobile-team", "announcement")
               for r in asyncio.run(read_all(kafka_bootstrap, f"{ns}.commune.raw.{family}", idle=0.5, timeout=10))]
    assert len(records) >= 10


@pytest.mark.unit
def test_simulate_says_so_when_the_simulator_refuses_to_start() -> None:
    """A province that does not exist: the simulator refuses it (exit 2) and `simulate` says that, with no progress
    bar left behind (CLI audit: it drew "simulating province 99 ... 100%" after the refusal)."""
    result = run("simulate", "--province", "99", "--duration", "2")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "simulate: the simulator exited with status 2" in result.stderr
    assert "100%" not in result.stderr


@pytest.mark.unit
def test_schemas_commands_wrap_the_exporters() -> None:
    """`schemas export --check` and `schemas asyncapi --check` give the exporters' own verdict on committed files."""
    direct = subprocess.run([sys.executable, "-m", "schemas.export", "--check"], capture_output=True, timeout=120)
    wrapped = run("schemas", "export", "--check")
    assert wrapped.returncode == direct.returncode
    asyncapi = run("schemas", "asyncapi", "--check")
    assert asyncapi.returncode == 0 and "up to date" in asyncapi.stdout


@pytest.mark.unit
def test_simulate_passes_national_mode_and_its_profile_through() -> None:
    """`simulate --national --profile peak` runs the simulator in national mode without a rate or a province (the
    simulator derives its rate and refuses one); a province run keeps both."""
    from services.cli.simulate import simulator_argv
    from services.simulator.__main__ import parse

    common = {"province": "20", "rate": 50.0, "duration": 5.0, "invalid_share": 0.05, "seed": 7, "profile": "peak",
              "day_seconds": 600.0, "bootstrap": "127.0.0.1:9092", "namespace": "ns"}
    national = simulator_argv(national=True, **common)  # type: ignore[arg-type]
    settings = parse(national[3:])
    assert settings.national and settings.profile == "peak" and settings.day_seconds == 600
    assert "--rate" not in national and "--province" not in national
    province = parse(simulator_argv(national=False, **common)[3:])  # type: ignore[arg-type]
    assert not province.national and province.rate == 50 and province.province == "20"
