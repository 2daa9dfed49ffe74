"""The expiry of the TLS certificates a service loads: services/common/certificates.py and its wiring in the runtime,
with certificates made in the test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY
from pydantic import SecretStr
from structlog.testing import capture_logs

from services.common import certificates
from services.common.health import Health
from services.common.runtime import Supervisor, serve
from services.common.settings import ServiceSettings
from services.gateway.settings import GatewaySettings
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit

EXPIRY = "commune_tls_certificate_expiry_timestamp_seconds"
UNREADABLE = "commune_tls_certificate_unreadable_total"
SUBJECT = "Nguyễn Văn An 001099012345"
"""A subject that must never reach a label or a log line."""
NOW = datetime.now(UTC).replace(microsecond=0)


def pem(not_after: datetime, subject: str = SUBJECT) -> bytes:
    """A self-signed certificate valid until `not_after`, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(min(NOW, not_after) - timedelta(days=1))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def sample(name: str, service: str, role: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service, "file": role})


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        monkeypatch.setattr(certificates, "log", structlog.get_logger("certificates"))
        yield captured


def test_the_gauge_is_the_earliest_not_after_of_a_bundle(tmp_path: Path, service: str) -> None:
    """A CA bundle of three certificates reports the one that expires first, wherever it stands in the file."""
    soonest = NOW + timedelta(days=9)
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(pem(NOW + timedelta(days=400)) + pem(soonest) + pem(NOW + timedelta(days=30)))
    certificates.refresh(service, {"kafka_ca": bundle})
    assert sample(EXPIRY, service, "kafka_ca") == soonest.timestamp()


def test_a_ca_bundle_reports_its_earliest_root_still_valid_and_a_chain_its_first_to_expire(tmp_path: Path,
                                                                                           service: str) -> None:
    """A CA bundle holds alternative roots: one expired long ago (a system bundle holds several) breaks nothing, and
    made CertificateExpired fire for ever (review). A client chain whose leaf expired is broken: its earliest."""
    now = datetime.now(UTC)
    expired, soonest, later = now - timedelta(days=900), now + timedelta(days=9), now + timedelta(days=400)
    files = {"kafka_ca": tmp_path / "ca.crt", "kafka_client": tmp_path / "client.crt"}
    files["kafka_ca"].write_bytes(pem(expired) + pem(later) + pem(soonest))
    files["kafka_client"].write_bytes(pem(expired) + pem(later))
    certificates.refresh(service, files)
    assert sample(EXPIRY, service, "kafka_ca") == int(soonest.timestamp())
    assert sample(EXPIRY, service, "kafka_client") == int(expired.timestamp())
    files["kafka_ca"].write_bytes(pem(expired) + pem(expired + timedelta(days=3)))  # all gone: the last to go
    certificates.refresh(service, {"kafka_ca": files["kafka_ca"]})
    assert sample(EXPIRY, service, "kafka_ca") == int((expired + timedelta(days=3)).timestamp())


@pytest.mark.parametrize("content", [b"not a certificate at all", b"", None], ids=["garbage", "empty", "missing"])
def test_an_unreadable_file_is_logged_and_counted_and_keeps_the_last_value(
        tmp_path: Path, service: str, logs: list[MutableMapping[str, Any]], content: bytes | None) -> None:
    """Garbage, an empty file or none at all: a warning naming the role and setting (not the content), the counter
    up by one, no exception, and the gauge still at the certificate read before."""
    path = tmp_path / "client.crt"
    expiry = NOW + timedelta(days=60)
    path.write_bytes(pem(expiry))
    certificates.refresh(service, {"kafka_client": path})
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    certificates.refresh(service, {"kafka_client": path})
    assert sample(UNREADABLE, service, "kafka_client") == 1
    assert sample(EXPIRY, service, "kafka_client") == expiry.timestamp()
    [warning] = [e for e in logs if e["event"] == "certificate.unreadable"]
    assert warning["log_level"] == "warning"
    assert (warning["service"], warning["file"], warning["setting"]) == (service, "kafka_client", "KAFKA_SSL_CERTFILE")
    assert warning["error"] == ("FileNotFoundError" if content is None else "ValueError")
    assert str(tmp_path) not in repr(warning) and "not a certificate" not in repr(warning)


def test_a_file_unreadable_from_the_start_has_no_sample(tmp_path: Path, service: str) -> None:
    """A file never read gives no made-up expiry: the sample is absent and the failure counted."""
    certificates.refresh(service, {"gateway": tmp_path / "absent.pem"})
    assert sample(EXPIRY, service, "gateway") is None
    assert sample(UNREADABLE, service, "gateway") == 1


def test_labels_are_the_service_and_a_role_never_the_path_or_subject(tmp_path: Path, service: str) -> None:
    """Every series has exactly the labels service and file, file one of the three roles."""
    good, bad = tmp_path / "secret-name.pem", tmp_path / "other-secret.pem"
    good.write_bytes(pem(NOW + timedelta(days=5)))
    certificates.refresh(service, {"kafka_ca": good, "gateway": bad})
    samples = [s for metric in REGISTRY.collect() if metric.name.startswith("commune_tls_certificate")
               for s in metric.samples if s.labels.get("service") == service]
    assert {s.name for s in samples} >= {EXPIRY, UNREADABLE}
    for s in samples:
        assert set(s.labels) == {"service", "file"} and s.labels["file"] in {"kafka_ca", "kafka_client", "gateway"}
        assert not any(str(tmp_path) in v or "secret" in v or "Nguy" in v for v in s.labels.values())


SASL: dict[str, Any] = {"sasl_username": "svc", "sasl_password": SecretStr("a-password-of-its-own")}


def test_the_settings_name_the_files_by_role(tmp_path: Path) -> None:
    """Kafka's files only when the connection uses TLS (PLAINTEXT loads neither); the gateway's own as `gateway`."""
    ca, cert, key = tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key"
    assert ServiceSettings(security_protocol="PLAINTEXT", ssl_cafile=ca).certificate_files() == {}
    assert ServiceSettings(security_protocol="SASL_SSL", **SASL, ssl_cafile=ca).certificate_files() == {"kafka_ca": ca}
    assert ServiceSettings(security_protocol="SSL", ssl_cafile=ca, ssl_certfile=cert).certificate_files() == {
        "kafka_ca": ca, "kafka_client": cert}
    gateway = GatewaySettings(security_protocol="SASL_SSL", **SASL, ssl_cafile=ca, tls_certfile=cert, tls_keyfile=key)
    assert gateway.certificate_files() == {"kafka_ca": ca, "gateway": cert}


async def test_the_watch_sees_a_rotated_file(tmp_path: Path, service: str) -> None:
    """The periodic refresh reports a certificate replaced on disk without a restart."""
    path = tmp_path / "ca.crt"
    old, new = NOW + timedelta(days=3), NOW + timedelta(days=300)
    path.write_bytes(pem(old))
    watch = asyncio.create_task(certificates.watch(service, {"kafka_ca": path}, interval_s=0.05))
    try:
        await eventually_async(lambda: sample(EXPIRY, service, "kafka_ca") == old.timestamp(), timeout=5,
                               what="the first certificate read")
        path.write_bytes(pem(new))
        await eventually_async(lambda: sample(EXPIRY, service, "kafka_ca") == new.timestamp(), timeout=5,
                               what="the rotated certificate read")
    finally:
        watch.cancel()


async def test_every_service_reports_its_files_from_the_runtime_start(tmp_path: Path, service: str) -> None:
    """`serve` (every service's start) watches the files of its settings as a supervised task of the run, and an
    unreadable one leaves the worker running."""
    ca = tmp_path / "ca.crt"
    expiry = NOW + timedelta(days=20)
    ca.write_bytes(pem(expiry))
    settings = ServiceSettings(security_protocol="SSL", ssl_cafile=ca, ssl_certfile=tmp_path / "missing.crt")
    stop, health = asyncio.Event(), Health(service)
    tasks: list[str] = []

    async def worker(supervisor: Supervisor) -> None:
        tasks.extend(t.get_name() for t in asyncio.all_tasks())
        supervisor.health.set_ready(True, "consuming")
        await supervisor.stop.wait()

    run = asyncio.create_task(serve(service, settings, worker, health=health, stop=stop))
    await eventually_async(lambda: health.ready and sample(EXPIRY, service, "kafka_ca") == expiry.timestamp(),
                           timeout=5, what="the CA's expiry reported while the worker runs")
    await eventually_async(lambda: sample(UNREADABLE, service, "kafka_client") == 1, timeout=5,
                           what="the missing client certificate counted")
    assert f"{service}:certificates" in tasks
    assert health.ready
    stop.set()
    await asyncio.wait_for(run, timeout=5)
