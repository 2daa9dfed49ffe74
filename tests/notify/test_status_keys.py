"""Records on commune.notify.status are keyed as the committed AsyncAPI document says, a 5-digit commune code, the
value's `commune` the same; a request of no commune (an erasure notice, ADR 0035) gives none."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from structlog.testing import capture_logs

from schemas.personal import ErasureNotice
from services.notify import metrics
from services.notify.erasures import notice_request
from services.notify.subscribers import Subscriber
from tests.notify.fakes import Calls, FakeChannel, Sent
from tests.notify.test_dispatcher import OUT, citizen_sms, running, settle

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI: dict[str, Any] = yaml.safe_load((ROOT / "schemas/asyncapi.yaml").read_text(encoding="utf-8"))
MESSAGE = ASYNCAPI["components"]["messages"]["notificationStatus"]
KEY = Draft202012Validator(MESSAGE["bindings"]["kafka"]["key"])
VALUE = Draft202012Validator({**MESSAGE["payload"], "components": ASYNCAPI["components"]})


def breaches(record: Sent) -> list[str]:
    """Where a status record departs from the document: its key, its value, or a value naming another commune."""
    key = (record.key or b"").decode()
    value = json.loads(record.value or b"")
    found = [f"key {key!r}: {e.message}" for e in KEY.iter_errors(key)]
    found += [f"value: {e.message}" for e in VALUE.iter_errors(value)]
    return found + ([] if value.get("commune") == key else [f"value commune {value.get('commune')!r} != key"])


async def test_a_citizens_status_record_is_keyed_by_its_commune() -> None:
    """An SMS to a citizen: its status is keyed by the event's commune, and so says its value."""
    async with running(FakeChannel()) as s:
        done = Calls()
        await s.dispatcher.submit(citizen_sms("keyed-1"), done)
        await settle(lambda: done.count == 1, "sent")
        [status] = s.producer.to(OUT.status)
    assert status.key == b"02269" and breaches(status) == []


async def test_a_request_of_no_commune_writes_no_status_record() -> None:
    """An erasure notice's webhook request (no commune: an erasure is the applicant's, wherever they went) handed
    to the dispatcher by mistake is refused, logged and counted as a bug, and given back done: no status record
    and no dead letter, which would be keyed b"" against the documented `^\\d{5}$`. Notices are told outside the
    dispatcher (ADR 0035); before, this request gave two status records keyed b"" and a dead letter so keyed."""
    sub = Subscriber(name="app", url="https://127.0.0.1/hook", secret=SecretStr("s" * 16), include_personal_data=True)
    notice = ErasureNotice(erasure_id="er-1", subject="a-abc", erased_at=datetime(2026, 12, 1, tzinfo=UTC))
    bugs = metrics.SKIPPED.labels("internal_error")
    before = bugs._value.get()
    with capture_logs() as logs:
        async with running(FakeChannel()) as s:
            done = Calls()
            await s.dispatcher.submit(notice_request(notice, sub), done)
            await settle(lambda: done.count == 1, "given back")
            written = [m for m in s.producer.sent if m.topic in (OUT.status, OUT.dlq)]
    assert [breaches(m) for m in written] == [] and written == []
    assert bugs._value.get() == before + 1
    assert [e["rule"] for e in logs if e["event"] == "notify.request_without_commune"] == ["erasure:app"]
