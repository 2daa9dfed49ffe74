"""Content-Type: a body the gateway cannot read as JSON is refused with 415 before it is read (in process, ASGI)."""

from __future__ import annotations

import orjson
import pytest

from services.gateway.batch import READABLE
from tests.gateway.asgi import API_KEY, Body, Recording, app, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
KEY = (b"x-api-key", API_KEY.encode())
EVENT = orjson.dumps(canonical_dossier())


@pytest.mark.parametrize("content_type", [
    b"text/plain", b"application/xml", b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded",
    b"application/json; charset=iso-8859-1", b'application/json; charset="latin1"', b"text/json", b"",
    b"\xff\xfe",
])
async def test_a_body_sent_as_something_else_than_json_is_refused_unread(content_type: bytes) -> None:
    body, pub = Body(chunks=None), Recording()
    answer = await call(app(pub), [KEY, (b"content-type", content_type)], body)
    assert answer.status == 415 and answer.json()["error"] == "unsupported_media_type"
    assert answer.headers["accept-post"] == ", ".join(READABLE) and answer.headers["connection"] == "close"
    assert body.read == 0 and pub.sent == []
    assert content_type.decode("latin-1") not in answer.json()["message"] or not content_type


@pytest.mark.parametrize("content_type", [
    None, b"application/json", b"Application/JSON; charset=UTF-8", b'application/json;charset="utf-8"',
    b"application/cloudevents+json", b"application/vnd.commune+json", b"application/x-ndjson",
])
async def test_json_in_any_of_its_names_is_read(content_type: bytes | None) -> None:
    pub = Recording()
    headers = [KEY] if content_type is None else [KEY, (b"content-type", content_type)]
    answer = await call(app(pub), headers, EVENT)
    assert answer.status == 202, answer.body
    assert len(pub.sent) == 1


async def test_credentials_come_before_the_media_type() -> None:
    answer = await call(app(), [(b"x-api-key", b"wrong"), (b"content-type", b"text/plain")], Body(chunks=None))
    assert answer.status == 401


@pytest.mark.parametrize("coding", [b"gzip", b"deflate", b"br", b"GZIP", b"gzip, identity", b"x-unknown"])
async def test_a_body_with_a_content_coding_is_refused_unread(coding: bytes) -> None:
    """The gateway inflates nothing: a deflated body was taken for the text it was (a plain JSON body labelled
    deflate: 202) and a gzipped one answered 400 as not UTF-8 (protocol audit). Now 415, unread, as RFC 9110 says, and
    `Accept-Encoding: identity`."""
    body, pub = Body(chunks=None), Recording()
    answer = await call(app(pub), [KEY, (b"content-type", b"application/json"), (b"content-encoding", coding)], body)
    assert answer.status == 415 and answer.json()["error"] == "unsupported_media_type"
    assert answer.headers["accept-encoding"] == "identity" and answer.headers["connection"] == "close"
    assert body.read == 0 and pub.sent == []


@pytest.mark.parametrize("coding", [b"identity", b"Identity", b""])
async def test_a_body_sent_as_it_is_is_read(coding: bytes) -> None:
    pub = Recording()
    answer = await call(app(pub), [KEY, (b"content-type", b"application/json"), (b"content-encoding", coding)], EVENT)
    assert answer.status == 202, answer.body
