"""The HMAC signature covers the whole request, is compared in constant time, and is accepted once (in process)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway import auth
from services.gateway.auth import RequestLine, Unauthenticated, canonical, identify, sign
from services.gateway.keys import Credential
from tests.gateway.asgi import API_KEY, CREDENTIALS, HMAC_KEY, Clock, Recording, app, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
GUIDE = Path(__file__).resolve().parents[2] / "docs/integrators.md"
NOW = 1_764_000_000
LINE = RequestLine(b"POST", b"/v1/events", b"family=dossier", b"02269", b"key-1")


def signed(line: RequestLine, body: bytes, t: int = NOW, key: bytes = HMAC_KEY) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-source-id", b"province"), (b"x-signature", sign(key, line, t, body).encode()),
               (b"content-type", b"application/json")]
    if line.commune:
        headers.append((b"x-commune-code", line.commune))
    if line.idempotency_key:
        headers.append((b"idempotency-key", line.idempotency_key))
    return headers


def verifies(line: RequestLine, body: bytes, signature: str, t: int = NOW) -> bool:
    """Whether `signature` (made for something) passes for `line` + `body` at `t`."""
    try:
        who = identify({"x-source-id": "province", "x-signature": signature}, line, CREDENTIALS, t, 300)
        assert who.pending is not None
        who.pending.update(body)
        who.pending.verify()
    except Unauthenticated:
        return False
    return True


def test_the_worked_example_of_the_guide_is_what_the_gateway_computes() -> None:
    """docs/integrators.md's canonical string and X-Signature are exactly what `canonical` and `sign` give."""
    text = GUIDE.read_text(encoding="utf-8")
    key = re.search(r"hmac_key `([^`]+)`", text)
    body = re.search(r"t = `\d+` and the body\n`([^`]+)`", text)
    block = re.search(r"The canonical string is\n\n((?:    .*\n)+)", text)
    header = re.search(r"`X-Signature: (t=(\d+),v1=[0-9a-f]{64})`", text)
    assert key and body and block and header
    lines = [ln[4:] for ln in block.group(1).splitlines()]
    line = RequestLine(lines[1].encode(), lines[2].encode(), lines[3].encode(), lines[4].encode(), lines[5].encode())
    raw = body.group(1).encode()
    assert f"({len(raw)} bytes" in text
    assert canonical(line, int(header.group(2)), hashlib.sha256(raw).hexdigest()).decode() == "\n".join(lines)
    assert sign(key.group(1).encode(), line, int(header.group(2)), raw) == header.group(1)


@pytest.mark.parametrize("change", ["method", "path", "query", "commune", "idempotency_key", "timestamp", "body"])
def test_every_part_of_the_request_is_signed(change: str) -> None:
    """Changing any one signed part (method, path, query, commune, Idempotency-Key, timestamp, body) fails."""
    body = b'{"MaHoSo":"X"}'
    signature = sign(HMAC_KEY, LINE, NOW, body)
    assert verifies(LINE, body, signature)
    if change == "timestamp":
        forged = signature.replace(f"t={NOW}", f"t={NOW + 1}")
        assert not verifies(LINE, body, forged)
    elif change == "body":
        assert not verifies(LINE, body + b" ", signature)
    else:
        assert not verifies(replace(LINE, **{change: getattr(LINE, change) + b"0"}), body, signature)


def test_another_sources_key_or_no_hmac_key_does_not_sign() -> None:
    """A signature made with a key other than the source's own, or for a source with only an API key: refused."""
    body = b"{}"
    assert not verifies(LINE, body, sign(b"other-key", LINE, NOW, body))
    with pytest.raises(Unauthenticated):
        identify({"x-source-id": "one-stop", "x-signature": sign(HMAC_KEY, LINE, NOW, body)}, LINE, CREDENTIALS,
                 NOW, 300)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification goes through hmac.compare_digest (API keys too), never ==."""
    seen: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert verifies(LINE, b"{}", sign(HMAC_KEY, LINE, NOW, b"{}"))
    identify({"x-api-key": API_KEY}, LINE, CREDENTIALS, NOW, 300)
    assert len(seen) == 1 + len([c for c in CREDENTIALS.values() if c.api_key is not None])


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199), st.integers(1, 255))
def test_any_change_to_the_body_fails(body: bytes, at: int, flip: int) -> None:
    """Flipping any bits of any byte of the body after signing: the signature no longer verifies."""
    signature = sign(HMAC_KEY, LINE, NOW, body)
    i = at % len(body)
    tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1:]
    assert not verifies(LINE, tampered, signature)


async def test_a_replayed_signature_is_refused() -> None:
    """A signed request is accepted once; the same bytes again get 401, a fresh signature of them 202."""
    pub, clock = Recording(), Clock(NOW)
    gateway = app(pub, clock)
    body = orjson.dumps(canonical_dossier("signed-1"))
    line = RequestLine(b"POST", b"/v1/events", b"", b"", b"")
    first = await call(gateway, signed(line, body), body)
    assert first.status == 202, first.body
    again = await call(gateway, signed(line, body), body)
    assert again.status == 401 and b"already used" in again.body
    clock.now += 1
    assert (await call(gateway, signed(line, body, t=NOW + 1), body)).status == 202
    assert len(pub.sent) == 2


async def test_a_signed_request_cannot_be_sent_for_another_commune_or_query() -> None:
    """The captured headers of a request for commune 02269 do not authenticate it for 00691 or another query."""
    pub = Recording()
    gateway = app(pub)
    body = orjson.dumps(canonical_dossier("signed-2"))
    line = RequestLine(b"POST", b"/v1/events", b"", b"02269", b"")
    headers = signed(line, body)
    other = [(k, b"00691" if k == b"x-commune-code" else v) for k, v in headers]
    assert (await call(gateway, other, body)).status == 401
    assert (await call(gateway, headers, body, query=b"family=dossier")).status == 401
    assert pub.sent == []
    assert (await call(gateway, headers, body)).status == 202


def test_credential_repr_hides_the_keys() -> None:
    """Secrets never show in a repr (what a log line or a traceback would print)."""
    assert "unit-hmac-key" not in repr(Credential(hmac_key=CREDENTIALS["province"].hmac_key))
