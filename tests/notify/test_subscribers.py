"""Webhook subscribers: a URL that cannot be a subscriber's, or would carry personal data in clear, is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.notification import ChannelKind
from services.notify import rules
from services.notify.channels.base import DeliveryError, compose
from services.notify.channels.http import HttpClient, Webhooks
from services.notify.subscribers import Registry, Subscriber
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit


def subscriber(url: str, **extra: Any) -> Subscriber:
    return Subscriber.model_validate({"name": "s", "url": url, "secret": "s3cret", **extra})


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.gov.vn/h", "example.gov.vn/h", "http:///h",
    "http://169.254.169.254/latest/meta-data/iam/", "http://[fe80::1]/h", "http://0.0.0.0:9102/metrics",
    "http://224.0.0.1/h", "https://user:pw@example.gov.vn/h",
    # the metadata address in other spellings a resolver reads the same (final review F5)
    "http://[::ffff:169.254.169.254]/h", "http://[::ffff:0.0.0.0]/h", "http://2852039166/h", "http://0xa9fea9fe/h",
    "http://0251.0376.0251.0376/h", "http://169.254.43518/h",
])
def test_a_url_no_subscriber_can_have_is_refused_at_load(url: str) -> None:
    """Not http(s), no host, a link-local (cloud metadata), unspecified or multicast address, credentials in the
    URL: refused when the registry is read. All were accepted; file:// then failed at every send as a retryable
    error, 40 times before its dead letter."""
    with pytest.raises(ValidationError, match="url") as refused:
        subscriber(url)
    assert "pw" not in str(refused.value)  # the refused input is not echoed (it may hold credentials)


@pytest.mark.parametrize("url", ["https://hooks.example.gov.vn/h", "http://127.0.0.1:8080/h", "https://10.0.0.7/h",
                                 "https://0x.example.vn/h", "https://1.example.vn/h"])
def test_an_ordinary_subscriber_url_is_taken(url: str) -> None:
    """Host names (even ones with digits or starting 0x) and dotted-quad addresses pass the check."""
    assert subscriber(url).url == url


def test_personal_data_goes_only_over_https_or_to_this_host() -> None:
    """A subscriber entitled to applicants' names, CCCD numbers and phones needs https (or a loopback address:
    nothing crosses the network); cleartext http elsewhere is refused. An empty secret is refused."""
    with pytest.raises(ValidationError, match="https"):
        subscriber("http://example.gov.vn/h", include_personal_data=True)
    for url in ("https://example.gov.vn/h", "http://127.0.0.1:9/h", "http://localhost:9/h", "http://[::1]:9/h"):
        assert subscriber(url, include_personal_data=True).include_personal_data
    assert subscriber("http://10.0.0.5/h").url == "http://10.0.0.5/h"
    with pytest.raises(ValidationError, match="secret"):
        Subscriber.model_validate({"name": "s", "url": "https://example.gov.vn/h", "secret": ""})


async def test_a_url_the_client_cannot_use_fails_for_good() -> None:
    """Past the registry's check (a registry built without it), a URL the HTTP client refuses is a dead letter at
    once (not retried: no retry can make it work)."""
    bad = Subscriber.model_construct(name="s", url="file:///etc/passwd", secret=subscriber("https://x.vn/h").secret,
                                     event_types=["*"], communes=["*"], provinces=["*"], include_personal_data=False)
    registry = Registry.model_construct(subscribers=[bad])
    [hook] = [r for r in rules.for_event(dossier(), directory(), registry) if r.channel is ChannelKind.WEBHOOK]
    http = HttpClient(2)
    try:
        with pytest.raises(DeliveryError) as refused:
            await Webhooks(http, registry).send(compose(hook, 2))
    finally:
        await http.close()
    assert not refused.value.retryable



def test_a_registry_refused_at_load_echoes_no_url_or_secret() -> None:
    """The registry file read whole (`load_registry` validates `Registry`): a refused URL or an unknown field is
    named, never shown. The subscriber's own `hide_input_in_errors` did not reach its registry: the URL with its
    password, and an unknown field's value, were in the error."""
    with pytest.raises(ValidationError, match=r"subscribers\.0\.url") as refused:
        Registry.model_validate({"subscribers": [
            {"name": "s", "url": "https://user:pw-1@example.gov.vn/h", "secret": "s3cret", "token": "pw-2"}]})
    assert "pw-" not in str(refused.value) and "subscribers.0.token" in str(refused.value)


def test_two_subscribers_of_one_name_are_refused_at_load() -> None:
    """A name is a subscriber's identity (its rule, its notification id, its secret at delivery): two of one name
    refuse the registry, naming the name, not the URLs or secrets. Both loaded, with one notification id between
    them: the ledger took the second's delivery for a repeat, and that subscriber silently got nothing."""
    with pytest.raises(ValidationError, match="'province'") as refused:
        Registry.model_validate({"subscribers": [
            {"name": "province", "url": "https://a.example.vn/hook", "secret": "s3cret-a"},
            {"name": "province", "url": "https://b.example.vn/hook", "secret": "s3cret-b"}]})
    assert "s3cret" not in str(refused.value) and "example.vn" not in str(refused.value)
    assert [s.name for s in Registry.model_validate({"subscribers": [
        {"name": "province", "url": "https://a.example.vn/hook", "secret": "s"},
        {"name": "board", "url": "https://a.example.vn/hook", "secret": "s"}]}).subscribers] == ["province", "board"]
