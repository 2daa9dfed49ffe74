"""The demo's processes on a secure broker: each as its own principal, never as the admin that runs the demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.demo import principals

pytestmark = pytest.mark.unit
ADMIN = {"KAFKA_BOOTSTRAP": "127.0.0.1:9492", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
         "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "admin", "KAFKA_SASL_PASSWORD": "admin-secret",
         "KAFKA_SSL_CAFILE": "/ca.crt", "PATH": "/bin"}


def secrets(tmp_path: Path) -> Path:
    for name in principals.SERVICES:
        (tmp_path / f"{name}.env").write_text(
            f"KAFKA_BOOTSTRAP=127.0.0.1:9392\nKAFKA_SECURITY_PROTOCOL=SASL_SSL\nKAFKA_SASL_MECHANISM=SCRAM-SHA-512\n"
            f"KAFKA_SASL_USERNAME={name}\nKAFKA_SASL_PASSWORD={name}-secret\nKAFKA_SSL_CAFILE=/ca.crt\n")
    return tmp_path


@pytest.mark.parametrize("name", sorted(principals.SERVICES))
def test_each_service_connects_as_itself_to_the_demo_bootstrap(tmp_path: Path, name: str) -> None:
    """A service gets its own user and password, the demo's bootstrap (a cluster's too), and the rest of the env."""
    env = principals.environment(name, ADMIN, secrets(tmp_path))
    assert (env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"]) == (name, f"{name}-secret")
    assert env["KAFKA_BOOTSTRAP"] == "127.0.0.1:9492" and env["PATH"] == "/bin"
    assert "admin-secret" not in env.values()


def test_a_process_that_is_no_kafka_client_gets_no_credentials(tmp_path: Path) -> None:
    """The fake providers and Prometheus never see a Kafka password."""
    env = principals.environment("prometheus", ADMIN, secrets(tmp_path))
    assert "KAFKA_SASL_PASSWORD" not in env and "KAFKA_SASL_USERNAME" not in env and env["PATH"] == "/bin"


def test_missing_credentials_are_named_and_plaintext_is_left_alone(tmp_path: Path) -> None:
    """No file for a service on a secure broker stops the demo with its name; a PLAINTEXT env passes unchanged."""
    with pytest.raises(principals.MissingCredentials, match="'notify'"):
        principals.environment("notify", ADMIN, tmp_path)
    plain = {"KAFKA_BOOTSTRAP": "127.0.0.1:9092", "PATH": "/bin"}
    assert principals.environment("notify", plain, tmp_path) == plain


def test_a_namespaced_demo_runs_as_the_principal_that_started_it(tmp_path: Path) -> None:
    """A test's demo in a namespace of its own keeps the runner's (admin's) credentials: the services' ACLs name
    the registry's own topics, not a namespace's."""
    env = principals.environment("intake", ADMIN, secrets(tmp_path), namespace="t1234")
    assert env["KAFKA_SASL_USERNAME"] == "admin"
