"""Webhook subscribers: a registry file (URL, event types, communes, secret) and HMAC-signed deliveries.

A provincial system subscribes without running a Kafka client. Each delivery is
a POST of the event as structured CloudEvents JSON with headers
`Webhook-Id` (= notification id, the idempotency key), `Webhook-Timestamp` and
`Webhook-Signature: v1=<hex HMAC-SHA256(secret, id.timestamp.body)>`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.envelope import Model

WILDCARD = "*"


LOOPBACK_NAMES = frozenset({"localhost"})


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names, if it is one; an IPv4 address written as IPv6 (`::ffff:169.254.169.254`) as the
    IPv4 address it reaches."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name (not resolved here)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _other_numeric_form(host: str) -> bool:
    """A host that resolvers read as an IPv4 address but is no dotted quad (`2852039166`, `0xa9fea9fe`,
    `0251.0376.0251.0376`, `169.254.43518`): no top-level domain is numeric, so such a host is refused rather than
    read the way the resolver would."""
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if not (last.isdigit() or last.startswith("0x")):
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
"""Cloud metadata services outside the link-local ranges: AWS's over IPv6 (a private ULA address) and Alibaba
Cloud's (in the shared 100.64/10 space). The others (169.254.169.254, fe80::a9fe:a9fe) are link-local."""


def refused_address(host: str) -> bool:
    """An address notify never sends to: a cloud metadata service (link-local 169.254.169.254, and
    `METADATA_ADDRESSES`), any other link-local, unspecified (0.0.0.0 reaches this host) or multicast address; an
    IPv4-mapped IPv6 address is read as its IPv4 address. The one rule behind both the registry's URL check and the
    HTTP client's resolver (`channels.resolver`). A host name is no address: False (it is checked once resolved, by
    that resolver)."""
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:  # fe80::1%eth0: the address
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return (address.is_link_local or address.is_unspecified or address.is_multicast
            or address in METADATA_ADDRESSES)


def is_loopback(host: str) -> bool:
    address = _address(host)
    return host.lower() in LOOPBACK_NAMES or (address is not None and address.is_loopback)


class Subscriber(Model):
    model_config = ConfigDict(hide_input_in_errors=True)  # a refused URL may hold credentials, a secret is one

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    url: str = Field(description="http(s) URL with a host; never a cloud metadata, link-local, unspecified or "
                     "multicast address, nor credentials; a host name resolving only to such addresses is not "
                     "called (address_refused, retried)")
    secret: SecretStr = Field(min_length=1)
    event_types: list[str] = Field(default_factory=lambda: [WILDCARD], description="CloudEvents types, '*' for all")
    communes: list[str] = Field(default_factory=lambda: [WILDCARD], description="Commune codes, '*' for all")
    provinces: list[str] = Field(default_factory=lambda: [WILDCARD])
    include_personal_data: bool = Field(default=False, description="Keep the applicant block in dossier events")

    @field_validator("url")
    @classmethod
    def _reachable_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http or https URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("no credentials in the URL: deliveries are signed with the secret")
        if _other_numeric_form(parts.hostname):
            raise ValueError("a numeric host must be written as a dotted-quad IPv4 address")
        if refused_address(parts.hostname):
            raise ValueError("not a cloud metadata, link-local, unspecified or multicast address")
        return url

    @model_validator(mode="after")
    def _personal_data_encrypted(self) -> Subscriber:
        host = urlsplit(self.url).hostname or ""
        if self.include_personal_data and urlsplit(self.url).scheme != "https" and not is_loopback(host):
            raise ValueError("include_personal_data needs an https url (or a loopback address)")
        return self

    def wants(self, event_type: str, commune: str, province: str) -> bool:
        return (
            (WILDCARD in self.event_types or event_type in self.event_types)
            and (WILDCARD in self.communes or commune in self.communes)
            and (WILDCARD in self.provinces or province in self.provinces)
        )


class Registry(Model):
    model_config = ConfigDict(hide_input_in_errors=True)  # pydantic shows a subscriber's input unless this hides it

    subscribers: list[Subscriber] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_subscriber_per_name(self) -> Registry:
        """A name is a subscriber's identity: its rule (`webhook:<name>`), so its notification ids, and its URL and
        secret at delivery (`by_name`). Two of one name shared one id, and the ledger sent only one of them."""
        names = [s.name for s in self.subscribers]
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"subscriber names must be unique: {', '.join(map(repr, repeated))} used more than once")
        return self

    def matching(self, event_type: str, commune: str, province: str) -> list[Subscriber]:
        return [s for s in self.subscribers if s.wants(event_type, commune, province)]

    def by_name(self, name: str) -> Subscriber | None:
        return next((s for s in self.subscribers if s.name == name), None)


def load_registry(path: Path | None) -> Registry:
    if path is None:
        return Registry()
    return Registry.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 over `id.timestamp.body`; subscribers recompute and compare in constant time."""
    mac = hmac.new(secret.encode(), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


MAX_SKEW_S = 300
"""How far a delivery's timestamp may lie from the receiver's clock: an older (or future) one is a replay."""


def verify(secret: str, webhook_id: str, timestamp: str, body: bytes, header: str, *,
           now: float | None = None, max_skew_s: float = MAX_SKEW_S) -> bool:
    """The subscriber's check: the signature matches (constant time, any header bytes) and the timestamp is within
    `max_skew_s` of `now` (default: the clock), so a recorded delivery cannot be replayed later."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > max_skew_s:
        return False
    expected = signature(secret, webhook_id, timestamp, body).encode()
    return hmac.compare_digest(expected, header.encode("utf-8", "surrogateescape"))


def without_applicant(payload: str) -> str:
    """A webhook's payload without its event's applicant block (as is without one): for a subscriber not entitled
    to it when the call is made (`Webhooks.send`)."""
    if '"applicant"' not in payload:
        return payload
    return without_applicant_block(orjson.loads(payload))


def without_applicant_block(doc: Any) -> str:
    """A structured CloudEvent's JSON without `data.applicant`."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        doc["data"].pop("applicant", None)
    return orjson.dumps(doc).decode()
