"""The gateway app in process with a recording publisher: body limits and bad bodies never reach Kafka."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from schemas.topics import MAX_RECORD_BYTES
from services.gateway.app import create_app
from services.gateway.keys import Credential
from services.gateway.publisher import BrokerUnavailable
from services.gateway.settings import GatewaySettings
from services.sources.registry import Source, SourceRegistry
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
API_KEY = "app-test-api-key-4d2b"
KEY = {"X-Api-Key": API_KEY}
CREDENTIAL = Credential(api_key=SecretStr(API_KEY))


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[list[object]] = []
        self.fail = fail

    async def publish(self, records: list[object], until: float = float("inf")) -> None:
        if self.fail:
            raise BrokerUnavailable("down")
        self.sent.append(records)

    async def close(self) -> None:
        return None


def client(publisher: Recording, **settings: object) -> TestClient:
    registry = SourceRegistry(sources=(Source(id="one-stop", sources=("/communes/02269/one-stop",),
                                              families=("dossier",), communes=("02269",)),))
    app = create_app(GatewaySettings(**settings), registry, {"one-stop": CREDENTIAL}, publisher)
    return TestClient(app)


def test_oversized_and_unreadable_bodies_are_refused_before_validation() -> None:
    """413 over the byte limit, 400 for non-JSON or too many records; nothing is published."""
    pub = Recording()
    http = client(pub, max_body_bytes=2000, max_records=2)
    big = orjson.dumps([canonical_dossier(str(i)) for i in range(5)])
    assert http.post("/v1/events", content=big, headers=KEY).status_code == 413
    assert http.post("/v1/events", content=b"{nope", headers=KEY).json()["error"] == "bad_body"
    three = orjson.dumps([{"a": 1}] * 3)
    assert http.post("/v1/events", content=three, headers=KEY).status_code == 400
    assert pub.sent == []


def test_published_records_are_binary_cloudevents_keyed_by_commune_on_the_raw_topic() -> None:
    """An accepted event goes to commune.raw.dossier (namespaced) as ce_* headers + data, key = commune."""
    pub = Recording()
    http = client(pub, namespace="ns1")
    response = http.post("/v1/events", content=orjson.dumps(canonical_dossier("e-1")), headers=KEY)
    assert response.status_code == 202 and response.json()["ids"] == ["e-1"]
    [[(topic, record)]] = pub.sent
    assert topic == "ns1.commune.raw.dossier" and record.key == b"02269"  # type: ignore[attr-defined]
    assert ("ce_id", b"e-1") in record.headers  # type: ignore[attr-defined]


def test_broker_failure_answers_503_with_retry_after() -> None:
    """BrokerUnavailable from the publisher becomes 503 with Retry-After."""
    http = client(Recording(fail=True), retry_after_s=7)
    response = http.post("/v1/events", content=orjson.dumps(canonical_dossier()), headers=KEY)
    assert response.status_code == 503 and response.headers["retry-after"] == "7"


def _reasons(response: object) -> set[str]:
    body = response.json()  # type: ignore[attr-defined]
    return {e["reason"] for e in body["errors"]} or {body["error"]}


def test_hostile_input_gets_a_4xx_with_a_reason_never_a_500() -> None:
    """Huge timestamps, deep or huge JSON, non-UTF-8, year 1 / 9999 and CR/LF codes: each a 4xx with a reason."""
    from services.gateway.auth import SIGNATURE, SOURCE_ID
    from tests.samples import HDR, portal_dossier, with_data

    pub = Recording()
    registry = SourceRegistry(sources=(Source(id="one-stop", sources=("/communes/02269/one-stop",),
                                              families=("dossier",), communes=("02269",)),))
    credentials = {"one-stop": CREDENTIAL, "signed": Credential(hmac_key=SecretStr("app-test-hmac-key-8e1c"))}
    # the list limit, not the size: a million-item list is 4 MB, the largest record the raw topics take 10 MiB
    settings = GatewaySettings(max_body_bytes=32 * 1024 * 1024, max_record_bytes=MAX_RECORD_BYTES,
                               held_body_bytes_per_source=32 * 1024 * 1024, held_body_bytes=64 * 1024 * 1024)
    http = TestClient(create_app(settings, registry, credentials, pub))
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    deeper = b"[" + b"[" * 600 + b"]" * 600 + b"]"
    portal = {"commune": HDR[0][1].decode()}
    cases = {
        "5,000-digit signature timestamp": (b"{}", {SOURCE_ID: "signed", SIGNATURE: "t=" + "9" * 5000 + ",v1=00"},
                                            {}, 401, "unauthenticated"),
        "400-digit signature timestamp": (b"{}", {SOURCE_ID: "signed", SIGNATURE: "t=" + "9" * 400 + ",v1=00"},
                                          {}, 401, "unauthenticated"),
        "Latin-1 superscript-digit timestamp": (b"{}", {SOURCE_ID: "signed", SIGNATURE: b"t=\xb2,v1=00"}, {}, 401,
                                                "unauthenticated"),
        "deep JSON object": (orjson.dumps(canonical_dossier())[:-1] + b',"x":' + deep + b"}", KEY, {}, 422,
                             "too_deep"),
        "deeper than orjson serialises, in an array": (deeper, KEY, {}, 400, "bad_body"),
        "a million-item list": (orjson.dumps(with_data(canonical_dossier(), requested_documents=["d"] * 1_000_000)),
                                KEY, {}, 422, "too_large"),
        "non-UTF-8 body": (b'{"MaHoSo": "\xff\xfe"}', KEY, portal, 400, "bad_body"),
        "non-UTF-8 NDJSON record": (b'{"MaHoSo": "\xff\xfe"}\n{}', KEY, portal, 422, "not_utf8"),
        "year-1 portal date": (orjson.dumps(portal_dossier(NgayNopHoSo="00010101000000")), KEY, portal, 422,
                               "value_out_of_range"),
        "year-9999 portal date": (orjson.dumps(portal_dossier(NgayHenTra="99991231235959")), KEY, portal, 422,
                                  "value_out_of_range"),
        "CR/LF dossier code": (orjson.dumps(portal_dossier("TL-1\r\nBcc: x@y.vn")), KEY, portal, 422,
                               "invalid_field"),
    }
    for case, (body, headers, params, status, reason) in cases.items():
        response = http.post("/v1/events", content=body, headers=headers, params=params)
        assert (response.status_code, reason in _reasons(response)) == (status, True), (case, response.text[:300])
        assert "Bcc" not in response.text and "9" * 50 not in response.text, case
    assert pub.sent == []
