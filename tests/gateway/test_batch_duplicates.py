"""One request holding the same event twice: intake would publish the first and dead-letter the second as
duplicate_event, while the 202 said both were accepted, listing the id twice (walkthrough, 2026-12-05). The gateway
refuses the batch as it does any record intake would dead-letter: 422, the repeat named by index, nothing published."""

from __future__ import annotations

import orjson
import pytest

from schemas.events import Family
from services.gateway.ingest import Publish, plan
from services.sources.registry import Source
from tests.gateway.asgi import API_KEY, Recording, app, call
from tests.samples import canonical_dossier, portal_dossier

pytestmark = pytest.mark.unit
KEY = [(b"x-api-key", API_KEY.encode())]


async def test_the_same_event_twice_in_one_batch_is_refused_naming_the_repeat() -> None:
    pub = Recording()
    first, other = canonical_dossier("evt-a"), canonical_dossier("evt-b")
    answer = await call(app(pub), KEY, orjson.dumps([first, other, first]))
    assert answer.status == 422 and pub.sent == []
    assert [(e["index"], e["field"], e["reason"]) for e in answer.json()["errors"]] == [(2, "id", "duplicate_event")]
    assert "evt-a" not in answer.json()["errors"][0]["message"]  # by index, not by value
    fine = await call(app(pub), KEY, orjson.dumps([first, other]))
    assert fine.status == 202 and fine.json()["ids"] == ["evt-a", "evt-b"] and len(pub.sent) == 1


def test_the_same_id_from_another_source_is_another_event() -> None:
    """Intake de-duplicates by source and id (CloudEvents: the pair identifies an event)."""
    caller = Source(id="desks", sources=("/communes/02269/*",), families=(Family.DOSSIER,), communes=("02269",))
    a = canonical_dossier("evt-a")
    b = {**a, "source": "/communes/02269/desk-2"}
    planned = plan(orjson.dumps([a, b]), "application/json", family=Family.DOSSIER, commune=None, caller=caller,
                   raw_topic={Family.DOSSIER: "commune.raw.dossier"}, max_records=1000, max_record_bytes=1 << 20)
    assert isinstance(planned, Publish), planned
    assert planned.answer.body["ids"] == ["evt-a", "evt-a"] and len(planned.records) == 2


async def test_a_portal_payload_sent_twice_in_one_batch_is_refused() -> None:
    """A portal record's id is derived from its content: the same payload twice is the same event."""
    pub = Recording()
    answer = await call(app(pub), [*KEY, (b"x-commune-code", b"02269")],
                        orjson.dumps([portal_dossier("P-1"), portal_dossier("P-1")]))
    assert answer.status == 422 and pub.sent == [], answer.json()
    assert [(e["index"], e["reason"]) for e in answer.json()["errors"]] == [(1, "duplicate_event")]
