"""Only a client that proves a principal's password over TLS to the project's CA gets in; the refusals are quick,
name their cause in the client's log, and never show a password (SecretStr in settings, nothing in logs or errors)."""

from __future__ import annotations

import asyncio
import logging
import stat
import subprocess

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from services.common import clients
from services.common.settings import KafkaConnection
from tests.brokers import KAFKA_SH
from tests.security.conftest import SecureBroker
from tests.security.probes import GUARD_S

pytestmark = pytest.mark.kafka


async def _connect(conn: KafkaConnection) -> None:
    """Start and stop an admin client (a bootstrap: one Metadata request after the handshakes)."""
    client = clients.admin(conn)
    try:
        async with asyncio.timeout(GUARD_S):
            await client.start()
            await client.list_topics()
    finally:
        await client.close()


async def test_a_principal_with_its_password_gets_in(secure_broker: SecureBroker) -> None:
    """The reference for the refusals below: the same broker, the intake principal's own settings, no error."""
    await _connect(secure_broker.conn("intake"))


async def test_a_client_without_credentials_is_refused(secure_broker: SecureBroker) -> None:
    """PLAINTEXT (no TLS, no SASL) to the SASL_SSL listener: the broker drops the connection, the client says so."""
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await _connect(KafkaConnection(bootstrap=secure_broker.bootstrap, security_protocol="PLAINTEXT"))


async def test_tls_without_a_password_is_refused(secure_broker: SecureBroker) -> None:
    """TLS to the project's CA but no SASL: refused the same way."""
    conn = secure_broker.conn("intake").model_copy(update={"security_protocol": "SSL"})
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await _connect(conn)


async def test_a_wrong_password_is_refused_and_never_shown(secure_broker: SecureBroker,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password: refused, the log says SaslAuthenticationFailed, and neither password appears anywhere."""
    right = secure_broker.conn("intake")
    wrong = right.model_copy(update={"sasl_password": SecretStr("not-the-password-7f3a")})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KafkaConnectionError) as refused:
        await _connect(wrong)
    assert "SaslAuthenticationFailed" in caplog.text
    assert right.sasl_password is not None
    for secret in ("not-the-password-7f3a", right.sasl_password.get_secret_value()):
        assert secret not in caplog.text
        assert secret not in str(refused.value) and secret not in repr(refused.value)
        assert secret not in repr(wrong) and secret not in repr(right) and secret not in str(right)


async def test_a_broker_certificate_from_another_ca_is_refused(secure_broker: SecureBroker,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Without the project's CA file the client does not trust the broker's certificate and sends no password."""
    conn = secure_broker.conn("intake").model_copy(update={"ssl_cafile": None})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KafkaConnectionError):
        await _connect(conn)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_credentials_are_private_files(secure_broker: SecureBroker) -> None:
    """The CA key, the broker key, every password and env file are readable by their owner only (0600, folder
    0700); the CA certificate is public."""
    assert stat.S_IMODE(secure_broker.secrets.stat().st_mode) == 0o700
    private = [p for p in secure_broker.secrets.iterdir() if p.name != "ca.crt"]
    assert {p.name for p in private} >= {"ca.key", "broker.pem", "admin.password", "intake.env"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in private} == {p.name: 0o600 for p in private}


def test_credentials_are_created_once(secure_broker: SecureBroker) -> None:
    """Running secrets.sh again (every start does) keeps the CA, the certificate and every password."""
    before = {p.name: p.read_bytes() for p in secure_broker.secrets.iterdir() if not p.name.endswith(".env")}
    secure_broker.run("acls")  # the users and ACLs again: creating what exists is a no-op
    subprocess.run([str(KAFKA_SH.parent / "secrets.sh"), str(secure_broker.secrets), secure_broker.bootstrap],
                   check=True, capture_output=True)
    after = {p.name: p.read_bytes() for p in secure_broker.secrets.iterdir() if not p.name.endswith(".env")}
    assert after == before
