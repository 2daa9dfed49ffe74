"""Notify's dead letters are what the AsyncAPI document says of commune.dlq.notify: headers, JSON value, key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from schemas import asyncapi, notify_deadletter
from schemas.notification import NotificationRequest
from schemas.topics import DLQ_NOTIFY
from services.notify import rules
from services.notify.channels.base import DeliveryError
from tests.notify.events import directory, dossier
from tests.notify.fakes import Calls, FakeChannel, Sent
from tests.notify.test_dead_letters import HOOKS, huge_dossier_requests
from tests.notify.test_dispatcher import OUT, running, settle

pytestmark = pytest.mark.unit
DOCUMENT = yaml.safe_load(asyncapi.COMMITTED.read_text(encoding="utf-8"))


def _message() -> dict[str, Any]:
    """The one message the committed document gives the commune.dlq.notify channel."""
    [channel] = [c for c in DOCUMENT["channels"].values() if c["address"] == DLQ_NOTIFY.name]
    [ref] = [m["$ref"] for m in channel["messages"].values()]
    message: dict[str, Any] = DOCUMENT["components"]["messages"][ref.rsplit("/", 1)[-1]]
    return message


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """`schema` checked with its `#/components/...` references resolved in the document, formats asserted."""
    return Draft202012Validator({**DOCUMENT, **schema}, format_checker=FormatChecker())


def _problems(validator: Draft202012Validator, instance: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:120]}" for e in validator.iter_errors(instance)]


async def _given_up(error: DeliveryError, requests: list[NotificationRequest]) -> list[Sent]:
    """The dead letters the dispatcher writes when its SMS channel answers every attempt with `error`."""
    async with running(FakeChannel(*[error] * 10), max_attempts=2) as s:
        done = Calls()
        for request in requests:
            await s.dispatcher.submit(request, done)
        await settle(lambda: done.count == len(requests), "all dead-lettered")
        return s.producer.to(OUT.dlq)


async def test_the_dead_letters_notify_writes_match_the_documented_message() -> None:
    """Letters the real dispatcher writes (refused for good: http_401; retried out: retries_exhausted:http_503; a huge
    webhook's, its body left out: dlq.omitted) each have headers, a JSON value and a key the document's message for
    commune.dlq.notify accepts. It was intake's message: dlq.source.topic required, a reason from intake's list, an
    octet-stream value, so no letter of notify's matched (2 header errors each)."""
    message = _message()
    headers, payload = _validator(message["headers"]), _validator(message["payload"])
    key = _validator(message.get("bindings", {}).get("kafka", {}).get("key", {}))
    letters = [*await _given_up(DeliveryError("http_401", retryable=False), huge_dossier_requests()),
               *await _given_up(DeliveryError("http_503"), rules.for_event(dossier("small-1"), directory(), HOOKS))]
    reasons = {letter.headers["dlq.reason"] for letter in letters}  # no webhook channel here: no_channel
    assert reasons == {b"http_401", b"retries_exhausted:http_503", b"no_channel"}
    assert any("dlq.omitted" in letter.headers for letter in letters)
    for letter in letters:
        assert _problems(headers, {k: v.decode() for k, v in letter.headers.items()}) == []
        assert _problems(payload, json.loads(letter.value or b"")) == []
        assert _problems(key, (letter.key or b"").decode()) == []
    assert message["contentType"] == "application/json"


def test_a_reason_outside_the_documented_pattern_is_written_within_it() -> None:
    """A channel's reason with a space or a character beyond ASCII (an exception's name, a code a provider made up)
    is written as the pattern the document gives `dlq.reason`, cut at 200 characters."""
    validator = _validator(_message()["headers"])
    for reason in ("http_401", "zns_error_-124", "retries_exhausted:ClientConnectorError", "lỗi mạng 502", "x" * 300,
                   ""):
        written = dict(notify_deadletter.headers(reason, 1, datetime(2025, 11, 3, tzinfo=UTC)))
        assert _problems(validator, {k: v.decode() for k, v in written.items()}) == [], reason
