"""Test tiers and the real Kafka broker every Kafka test runs against.

Broker choice, in order: `KAFKA_BOOTSTRAP` if set (with its `KAFKA_*` credentials);
testcontainers' Kafka when a Docker engine answers; otherwise the local broker of
`infra/kafka` (started on first use, left running for the next run): the secure one
(SASL_SSL, ACLs; ADR 0014) unless `KAFKA_SECURE=0`. On the secure broker the tests
run as its `admin` principal: the fixture puts admin's `KAFKA_*` credentials in the
environment, so every `KafkaConnection` and every service process a test starts
picks them up, and sets `KAFKA_SECURE=1`, so a broker or cluster a test starts of
its own is secure too, with the same users (`tests/brokers.py`, `tests/faults.py`).
Unit tests never see those variables.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import claims, failure_logs, keys_env, naming

ROOT = Path(__file__).resolve().parent.parent

keys_env.apply()  # intake seals personal data: every service a test starts gets the test keys


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Apache Kafka broker."""
    if explicit := os.environ.get("KAFKA_BOOTSTRAP"):
        yield explicit
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    if os.environ.get("KAFKA_SECURE", "1") == "0":
        kafka_sh = str(ROOT / "infra/kafka/kafka.sh")
        subprocess.run([kafka_sh, "start"], check=True)
        # its address as the script has it (KAFKA_PORT moves it off 9092), as the secure broker's below
        bootstrap = subprocess.run([kafka_sh, "bootstrap"], check=True, capture_output=True, text=True).stdout.strip()
    else:
        bootstrap = _secure_broker_as_admin()
    before = _topics(bootstrap)
    yield bootstrap
    if not os.environ.get("KEEP_TEST_TOPICS"):  # set it to look at a run's topics afterwards
        _forget_test_topics(bootstrap, before)


SECURITY_VARIABLES = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                      "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SECURE")


def _secure_broker_as_admin() -> str:
    """Start the local secure broker, put admin's credentials in the environment; its bootstrap address."""
    from services.common.settings import KafkaConnection

    kafka_sh = str(ROOT / "infra/kafka/kafka.sh")
    env = {**os.environ, "KAFKA_SECURE": "1"}
    subprocess.run([kafka_sh, "start"], check=True, env=env)
    asked = {what: subprocess.run([kafka_sh, *what.split()], check=True, env=env, capture_output=True,
                                  text=True).stdout.strip() for what in ("env admin", "bootstrap")}
    admin = KafkaConnection.from_env_file(Path(asked["env admin"]))
    # not KAFKA_BOOTSTRAP: tests pass the address, and `own_broker` skips when an external broker is named
    os.environ.update({k: v for k, v in admin.environment().items() if k != "KAFKA_BOOTSTRAP"})
    # brokers of a test's own: secure, same users, no ACL step (their clients are admin)
    os.environ.update({"KAFKA_SECURE": "1", "KAFKA_APPLY_ACLS": "0"})
    return asked["bootstrap"]


@pytest.fixture(autouse=True)
def _no_broker_credentials_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test sees the environment of a developer's shell, not the credentials a Kafka test put there."""
    if request.node.get_closest_marker("unit"):
        for name in SECURITY_VARIABLES:
            monkeypatch.delenv(name, raising=False)


def _topics(bootstrap: str) -> set[str]:
    from services.common.admin import list_topics
    from services.common.settings import KafkaConnection

    return asyncio.run(list_topics(KafkaConnection(bootstrap=bootstrap)))


def _forget_test_topics(bootstrap: str, before: set[str]) -> None:
    """The local broker outlives the run: the per-test namespaces' topics it created go, or thousands of idle
    partitions pile up run after run until the broker runs out of file descriptors."""
    from services.common.admin import delete_topics
    from services.common.settings import KafkaConnection

    try:
        created = sorted(t for t in _topics(bootstrap) - before  # this run's namespaces only (tests/naming.py)
                         if naming.ours(t) and not t.startswith(("commune.", "_")))
        for start in range(0, len(created), 200):
            asyncio.run(delete_topics(KafkaConnection(bootstrap=bootstrap), created[start:start + 200]))
    except Exception as exc:  # tidying up never fails the run
        print(f"\nleft the test topics on the broker ({type(exc).__name__})")


@pytest.fixture(scope="session")
def kafka_topics(kafka_bootstrap: str) -> str:
    """The broker with every registry topic created, and configured as the registry says (as `make up`: the local
    broker outlives registry changes, and a service refuses to start on some drifts, ADR 0028)."""
    from services.common.admin import ensure_topics, reconcile_configs
    from services.common.settings import KafkaConnection

    asyncio.run(reconcile_configs(KafkaConnection(bootstrap=kafka_bootstrap)))
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap)))
    return kafka_bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix for per-test topics and consumer groups."""
    return naming.unique()


TIERS = ("unit", "kafka", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries its tier (unit, kafka or slow), so `make test-unit` runs every pure test."""
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError("tests without a tier marker (pytestmark = pytest.mark.unit / kafka / slow): "
                                + ", ".join(untiered[:20]) + (" ..." if len(untiered) > 20 else ""))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (`CI=true`) a skipped test fails: a missing promtool or Prometheus, a broker given from outside, must not
    turn a check into a silent pass on the machine whose run decides whether a change lands. A failed test's report
    carries the last lines of its services' logs (`failure_logs`)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail")
            and not claims.claimed_elsewhere(item)):  # a test another run of `make test` runs
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped in CI ({reason}): CI must run every test"
    if report.failed and report.when == "call":  # what the test's services wrote, in the report CI keeps
        tmp = getattr(item, "funcargs", {}).get("tmp_path")
        if logs := failure_logs.section(tmp if isinstance(tmp, Path) else None):
            report.sections.append(("service logs", logs))
