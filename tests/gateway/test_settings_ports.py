"""The gateway's two servers (the API, /metrics) on one address are refused at start (settings audit), and so are
trusted proxies uvicorn would not read as addresses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from services.gateway.__main__ import server_config
from services.gateway.app import create_app
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import CREDENTIALS, REGISTRY, Clock, Recording

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("host", "http_host"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1")])
def test_the_api_and_metrics_on_one_address_are_refused(host: str, http_host: str) -> None:
    """Two servers on one address: the second could not bind and the process crash-looped; two hosts are fine."""
    with pytest.raises(ValidationError, match="GATEWAY_PORT and GATEWAY_HTTP_PORT"):
        GatewaySettings(port=9104, http_port=9104, host=host, http_host=http_host)
    GatewaySettings(port=9104, http_port=9104, host="127.0.0.1", http_host="127.0.0.2")


@pytest.mark.parametrize("value", ["*", "0.0.0.0/0", "::/0", "10.0.0.1/8", "proxy.internal", "127.0.0.1,nope"])
def test_trusted_proxies_that_are_not_addresses_or_networks_are_refused(value: str) -> None:
    """Every address at once would let any peer name any address; uvicorn would take a host name or a network with
    host bits set as a literal that never matches, leaving the proxy untrusted without a word."""
    with pytest.raises(ValidationError, match="trusted_proxies"):
        GatewaySettings(trusted_proxies=value)
    assert GatewaySettings(trusted_proxies=" 10.0.0.0/8, ::1 ,").trusted_proxies == "10.0.0.0/8,::1"
    assert GatewaySettings(trusted_proxies=" , ").trusted_proxies == ""


@pytest.mark.parametrize("trusted", ["", "10.0.0.7"])
def test_uvicorns_own_forwarded_variable_is_said_to_be_ignored(trusted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """FORWARDED_ALLOW_IPS (which the settings' text once advised) trusts nobody now: a start with it set says so,
    and uvicorn reads X-Forwarded-* from GATEWAY_TRUSTED_PROXIES' proxies alone."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.9")
    settings = GatewaySettings(trusted_proxies=trusted)
    with capture_logs() as logs:
        config = server_config(settings, create_app(settings, REGISTRY, CREDENTIALS, Recording(),
                                                    claims=MemoryClaims(Clock())))
    assert [e["event"] for e in logs] == ["gateway.forwarded_allow_ips_ignored"]
    assert config.proxy_headers is bool(trusted)  # without proxy headers uvicorn reads no forwarded address at all
    assert not trusted or config.forwarded_allow_ips == trusted
