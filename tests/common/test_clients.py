"""Connection settings: read once from KAFKA_*, applied alike to aiokafka clients and the faust app."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.common import clients
from services.common.clients import connection_options, faust_options
from services.common.settings import KafkaConnection, ServiceSettings

pytestmark = pytest.mark.unit


class _Service(ServiceSettings):
    model_config = ServiceSettings.model_config | {"env_prefix": "TOY_"}


def test_connection_fields_come_from_kafka_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """KAFKA_BOOTSTRAP reaches every service and the CLI and wins; a bare BOOTSTRAP reaches none."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)  # a run against a broker of its own sets it
    monkeypatch.setenv("BOOTSTRAP", "bare:1")
    assert _Service().bootstrap == KafkaConnection().bootstrap == "127.0.0.1:9092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    assert KafkaConnection().bootstrap == "k1:9092,k2:9092"
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    settings = _Service()
    assert settings.bootstrap == "k1:9092,k2:9092"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert _Service(bootstrap="code:1").bootstrap == "code:1"  # by field name in code
    monkeypatch.setenv("TOY_BOOTSTRAP", "toy-only:1")
    assert _Service().bootstrap == "k1:9092,k2:9092"
    monkeypatch.delenv("KAFKA_BOOTSTRAP")
    assert _Service().bootstrap == "toy-only:1" and KafkaConnection().bootstrap == "127.0.0.1:9092"


def test_plaintext_options_carry_no_credentials() -> None:
    """PLAINTEXT: the bootstrap list and the protocol, nothing else."""
    assert connection_options(KafkaConnection(bootstrap="a:1")) == {"bootstrap_servers": "a:1",
                                                                    "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_options_carry_the_mechanism_user_password_and_tls() -> None:
    """SASL_SSL: aiokafka gets the mechanism, the user, the password in clear (only there) and a TLS context."""
    conn = KafkaConnection(bootstrap="a:1", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="intake", sasl_password=SecretStr("pw"))
    options = connection_options(conn)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["sasl_plain_username"] == "intake"
    assert options["sasl_plain_password"] == "pw" and isinstance(options["ssl_context"], ssl.SSLContext)


def test_faust_gets_the_same_brokers_and_credentials() -> None:
    """The deadline tracker's faust app connects with the same settings as every aiokafka client."""
    plain = faust_options(KafkaConnection(bootstrap="a:1, b:2"))
    assert plain == {"broker": ["kafka://a:1", "kafka://b:2"], "broker_credentials": None}
    sasl = faust_options(KafkaConnection(bootstrap="a:1", security_protocol="SASL_PLAINTEXT",
                                         sasl_mechanism="SCRAM-SHA-256", sasl_username="notify",
                                         sasl_password=SecretStr("pw")))["broker_credentials"]
    assert (sasl.username, sasl.password, str(sasl.mechanism.value)) == ("notify", "pw", "SCRAM-SHA-256")


def test_an_env_file_is_read_from_the_path_kafka_sh_prints(tmp_path: Path) -> None:
    """`kafka.sh env <principal>` prints a path: the README's `from_env_file(path)` takes it as a string or a Path
    (downstream audit: a string raised AttributeError)."""
    env = tmp_path / "reader.env"
    env.write_text("# comment\nKAFKA_BOOTSTRAP=127.0.0.1:9392\nKAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
                   "KAFKA_SASL_MECHANISM=SCRAM-SHA-512\nKAFKA_SASL_USERNAME=reader\nKAFKA_SASL_PASSWORD=pw\nOTHER=x\n",
                   encoding="utf-8")
    for given in (str(env), env):
        conn = KafkaConnection.from_env_file(given)
        assert (conn.bootstrap, conn.sasl_username) == ("127.0.0.1:9392", "reader")


@pytest.mark.parametrize(("group", "options", "expected_ms"), [
    ("g", {"session_timeout_ms": 10_000}, 40_000),
    ("g", {"session_timeout_ms": 10_000, "rebalance_timeout_ms": 30_000}, 40_000),
    ("g", {"session_timeout_ms": 10_000, "rebalance_timeout_ms": 60_000}, 65_000),
    ("g", {"session_timeout_ms": 45_000}, 50_000),
    ("g", {"rebalance_timeout_ms": 60_000, "request_timeout_ms": 50_000}, 50_000),
    (None, {}, 40_000),
])
async def test_a_group_members_requests_may_wait_its_rebalance_timeout_and_5_s_more(
        group: str | None, options: dict[str, int], expected_ms: int) -> None:
    """The broker holds a JoinGroup until every member has rejoined or the rebalance timeout passed: a member's
    requests get that long and 5 s more, as Java's client gives JoinGroup (aiokafka gives its 40 s request timeout
    alone, and timed out a join held 45 s by another member's revocation); an explicit request timeout wins."""
    made = clients.consumer(KafkaConnection(bootstrap="127.0.0.1:1"), client_id="t", group_id=group, **options)
    try:
        assert made._client._request_timeout_ms == expected_ms
    finally:
        await made.stop()  # never started: closes nothing but the client it made
