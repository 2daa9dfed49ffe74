"""The gateway refuses what intake would dead-letter for its size, and only that: each event is measured as intake
will publish it (canonical, its applicant sealed) against intake's canonical limit. Intake's own validation, run on
the record the gateway publishes, gives the verdict each answer is compared with."""

from __future__ import annotations

import asyncio
import http.client
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import wire
from schemas.topics import CANONICAL_RECORD_BYTES
from services.gateway.batch import check
from services.gateway.settings import GatewaySettings
from services.intake.settings import IntakeSettings
from tests.gateway.asgi import API_KEY, REGISTRY, Recording, app, call
from tests.gateway.conftest import serving
from tests.gateway.intake_verdict import Verdict, canonical_bytes, intake_verdict
from tests.kafkatools import free_port
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
LIMIT = CANONICAL_RECORD_BYTES
KEY = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json")]
DOCUMENT = "Giấy chứng nhận " + "\u1ec7" * 330
"""The audit's requested document: 346 characters, 1,012 bytes."""
APPLICANT = {"name": 'Trần Văn "Minh"', "phone": "0987654321", "email": "minh@example.vn",
             "address": "Thôn Nà Tàng, " + "\u1ec7" * 400, "preferred_locale": "km"}
MOST_PAD = 1500
"""ASCII bytes `dossier` can add: the rejection reason (1,000 characters at most) and one more document (500)."""


def dossier(documents: int, pad: int, applicant: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dossier event asking for `documents` of the audit's documents, `pad` ASCII bytes more (1 to `MOST_PAD`)."""
    reason = min(pad, 1000)
    return canonical_dossier("evt-size", status=5, applicant=applicant or APPLICANT, rejection_reason="r" * reason,
                             requested_documents=[DOCUMENT] * documents + ["a" * (pad - reason)])


def published(event: dict[str, Any]) -> wire.KafkaRecord:
    """The raw record the gateway publishes for `event` once it has passed the gateway's validation."""
    checked = check([orjson.dumps(event)], caller=REGISTRY.sources[0])
    assert checked.errors == [], checked.errors
    return wire.encode(checked.events[0][1])


async def sized(target: int, applicant: dict[str, Any] | None = None, sealing: bool = True) -> dict[str, Any]:
    """A dossier whose canonical record, as intake makes it of what the gateway publishes, is `target` bytes."""
    documents = 0
    for _ in range(6):
        pad = 1 + target - await canonical_bytes(published(dossier(documents, 1, applicant)), sealing=sealing)
        if 1 <= pad <= MOST_PAD:
            return dossier(documents, pad, applicant)
        documents += round((pad - MOST_PAD / 2) / len(orjson.dumps(DOCUMENT) + b","))
    raise AssertionError(f"no dossier of {target} bytes")


def post(port: int, event: dict[str, Any]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/events", orjson.dumps(event), {k.decode(): v.decode() for k, v in KEY})
        answer = conn.getresponse()
        return answer.status, orjson.loads(answer.read())
    finally:
        conn.close()


def test_the_gateway_accepts_what_intake_publishes_and_refuses_what_it_dead_letters_for_size() -> None:
    """Through the gateway's own server: a dossier whose sealed canonical record is exactly intake's limit, 202, and
    intake publishes the record the gateway published; one byte more, 422 `payload_too_large`, and intake
    dead-letters that record as `payload_too_large`; so the audit's dossier (1,000 documents of 346 characters, a
    1,015,441-byte record). Before: 202 for all three, and the last two never reached anyone."""
    audits = canonical_dossier("evt-big", status=5, requested_documents=[DOCUMENT] * 1000)
    at_limit, one_over = asyncio.run(sized(LIMIT)), asyncio.run(sized(LIMIT + 1))
    publisher = Recording()
    with serving(GatewaySettings(port=free_port()), publisher=publisher) as port:
        answers = [post(port, event) for event in (at_limit, one_over, audits)]
    assert [status for status, _ in answers] == [202, 422, 422], answers
    [[(_, sent)]] = publisher.sent
    assert asyncio.run(intake_verdict(sent)) == Verdict(canonical_bytes=LIMIT)
    for (_, body), event in zip(answers[1:], (one_over, audits), strict=True):
        assert [e["reason"] for e in body["errors"]] == ["payload_too_large"], body
        assert asyncio.run(intake_verdict(published(event))) == Verdict(reason="payload_too_large")


def test_the_canonical_limit_and_sealing_are_intakes_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the gateway measures against intake's canonical limit, sealed; INTAKE_MAX_CANONICAL_BYTES and
    INTAKE_SEAL_PERSONAL_DATA move the gateway with intake."""
    assert GatewaySettings().max_canonical_bytes == IntakeSettings().max_canonical_bytes == LIMIT
    assert GatewaySettings().intake_seals and IntakeSettings().seal_personal_data
    monkeypatch.setenv("INTAKE_MAX_CANONICAL_BYTES", "500000")
    monkeypatch.setenv("INTAKE_SEAL_PERSONAL_DATA", "false")
    assert GatewaySettings().max_canonical_bytes == IntakeSettings().max_canonical_bytes == 500_000
    assert not GatewaySettings().intake_seals and not IntakeSettings().seal_personal_data


TEXT = "aệĐ\"\\ 😀"
"""Characters of every UTF-8 width, and the two JSON escapes: a clear value of quotes is longer than its token."""
applicants = st.fixed_dictionaries({
    "name": st.text(TEXT, max_size=200), "address": st.text(TEXT, max_size=500),
    "phone": st.sampled_from([None, "0987654321", "+84 912 345 678", "-", "0000000000"]),
    "email": st.sampled_from([None, "minh@example.vn", "N/A"]),
    "id_number": st.sampled_from([None, "001099012345"]), "zalo_user_id": st.sampled_from([None, "zalo1234", "-"]),
    "preferred_locale": st.sampled_from(["vi", "km", "en"])})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(applicants, st.one_of(st.integers(-200, 200), st.integers(-20_000, 2_000)), st.booleans())
async def test_the_gateway_answers_202_exactly_when_intake_publishes(applicant: dict[str, Any], off: int,
                                                                     sealing: bool) -> None:
    """Any applicant (quotes, 4-byte characters, contacts that reach nobody), its dossier's canonical record within
    20 kB of intake's limit, intake sealing or not: 202 exactly when intake publishes what the gateway published,
    else 422 `payload_too_large` exactly when intake dead-letters that record for its size."""
    event = await sized(LIMIT + off, applicant, sealing)
    publisher = Recording()
    answer = await call(app(publisher, intake_seals=sealing), KEY, orjson.dumps(event))
    verdict = await intake_verdict(publisher.sent[0][0][1] if publisher.sent else published(event), sealing=sealing)
    if off <= 0:
        assert answer.status == 202 and verdict == Verdict(canonical_bytes=LIMIT + off), (answer.status, verdict)
    else:
        assert answer.status == 422 and verdict == Verdict(reason="payload_too_large"), (answer.status, verdict)
        assert [e["reason"] for e in answer.json()["errors"]] == ["payload_too_large"]
