"""When the TLS certificates a service loads expire, so an operator learns it weeks before, not when everything stops.

`commune_tls_certificate_expiry_timestamp_seconds{service,file}` is when each PEM file the settings name stops working
(`ServiceSettings.certificate_files`): a chain's earliest notAfter (its first to expire breaks it), a CA bundle's
earliest among the roots still valid (`bundle_expiry`: any of them may be the brokers'). The runtime reads them at the
start of every run and then every `REFRESH_S`, so a file rotated on disk is seen. A file that cannot be read (missing,
no permission, no certificate in it) is logged (`certificate.unreadable`: the role, its setting and the error, never the
file's content) and counted (`commune_tls_certificate_unreadable_total`); the gauge keeps the last value read, and the
service goes on: the clients that load the file say for themselves whether they can work without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import structlog
from cryptography import x509

from services.common import telemetry
from services.common.settings import CertificateRole

log = structlog.get_logger("certificates")
REFRESH_S = 3600.0
SETTINGS: dict[CertificateRole, str] = {"kafka_ca": "KAFKA_SSL_CAFILE", "kafka_client": "KAFKA_SSL_CERTFILE",
                                        "gateway": "GATEWAY_TLS_CERTFILE"}
"""The variable that names each role's file, for the log line of a file that cannot be read."""


def earliest_expiry(pem: bytes) -> float:
    """The earliest notAfter (epoch seconds) among the PEM's certificates; ValueError when it holds none."""
    return min(cert.not_valid_after_utc.timestamp() for cert in x509.load_pem_x509_certificates(pem))


def bundle_expiry(pem: bytes, now_s: float) -> float:
    """A CA file's expiry: the earliest notAfter among its certificates still valid at `now_s`, or the latest of
    all when none is. A bundle holds alternative roots, any of which may be the brokers': one long expired does not
    break TLS (a system bundle, `/etc/ssl/certs/ca-certificates.crt`, holds several, and its earliest made
    CertificateExpired fire for ever; review). A chain (a client's, the gateway's) breaks with its first to expire:
    `earliest_expiry`."""
    expiries = [cert.not_valid_after_utc.timestamp() for cert in x509.load_pem_x509_certificates(pem)]
    valid = [t for t in expiries if t > now_s]
    return min(valid) if valid else max(expiries)


def expiry(role: CertificateRole, pem: bytes, now_s: float) -> float:
    """When the file of `role` stops working: a CA bundle's `bundle_expiry`, a chain's `earliest_expiry`."""
    return bundle_expiry(pem, now_s) if role == "kafka_ca" else earliest_expiry(pem)


def refresh(service: str, files: Mapping[CertificateRole, Path]) -> None:
    """Read each file and set its gauge; an unreadable file is logged and counted, never raised (blocking file I/O)."""
    for role, path in files.items():
        try:
            expires = expiry(role, path.read_bytes(), time.time())
        except (OSError, ValueError) as exc:
            reason = {"reason": exc.strerror or ""} if isinstance(exc, OSError) else {}
            log.warning("certificate.unreadable", service=service, file=role, setting=SETTINGS[role],
                        error=type(exc).__name__, **reason)
            telemetry.CERTIFICATE_UNREADABLE.labels(service, role).inc()
            continue
        telemetry.CERTIFICATE_EXPIRY.labels(service, role).set(expires)


async def watch(service: str, files: Mapping[CertificateRole, Path], interval_s: float = REFRESH_S) -> None:
    """`refresh` now and every `interval_s`, off the event loop (a file on a slow mount holds no record up)."""
    while True:
        await asyncio.to_thread(refresh, service, files)
        await asyncio.sleep(interval_s)
