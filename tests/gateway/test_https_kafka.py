"""The HTTPS option: with a certificate and key in its settings the gateway serves TLS only (real process)."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from bench.bench_gateway_tls import certificate as self_signed
from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import API_KEY, Site, wait_ready
from tests.samples import canonical_dossier


@pytest.mark.unit
def test_https_needs_both_certificate_and_key(tmp_path: Path) -> None:
    """A certificate without its key (or the reverse) is a settings error, not a silent HTTP fallback."""
    with pytest.raises(ValueError, match="TLS"):
        GatewaySettings(tls_certfile=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="TLS"):
        GatewaySettings(tls_keyfile=tmp_path / "k.pem")
    assert GatewaySettings().tls_certfile is None and GatewaySettings().host == "127.0.0.1"


@pytest.mark.kafka
def test_the_gateway_serves_https_with_its_certificate(site: Site) -> None:
    """With GATEWAY_TLS_CERTFILE/KEYFILE: a client trusting the certificate gets 202 over TLS; plain HTTP on the
    same port gets no answer."""
    certfile, keyfile = self_signed(site.files)
    gateway = site.start("tls", ready=False, GATEWAY_TLS_CERTFILE=str(certfile), GATEWAY_TLS_KEYFILE=str(keyfile))
    trust = ssl.create_default_context(cafile=str(certfile))
    wait_ready(gateway, trust)
    assert gateway.url.startswith("https://")
    body = orjson.dumps(canonical_dossier("tls-" + uuid.uuid4().hex[:8]))
    answer = httpx.post(gateway.url + "/v1/events", content=body, verify=trust, timeout=30,
                        headers={"X-Api-Key": API_KEY, "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text
    with pytest.raises(httpx.HTTPError):
        httpx.get(gateway.url.replace("https://", "http://") + "/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the certificate refuses it
        httpx.get(gateway.url + "/healthz", timeout=5)
