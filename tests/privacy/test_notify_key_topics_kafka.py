"""notify's key store on the real broker follows the applicants' key topic alone (ADR 0044): the dead letters' keys
seal intake's dead letters only, which notify never opens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.topics import KEYS_DEAD_LETTERS, scoped
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from services.privacy.store import key_messages
from tests.kafkatools import produce
from tests.notify.conftest import MailSink, StartNotify, publish
from tests.notify.events import dossier
from tests.privacy.keys import keyring
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

MINH = {"name": "Trần Văn Minh", "id_number": "001099000111", "phone": "0922222222", "preferred_locale": "vi"}
EXPIRES = datetime(2027, 1, 1, tzinfo=UTC)


async def test_notify_reads_no_dead_letters_key_and_still_opens_its_applicants(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        smtp: tuple[MailSink, int], tmp_path: Path) -> None:
    """Five dead letters' keys of applicants without a permanent key, as intake writes them, never reach notify's key
    store: it starts having read Minh's key alone, and his SMS goes out (before: it read both topics, and a province's
    junk records filled its memory with keys it never uses; soak audit)."""
    maker = keyring()
    letters = [r for i in range(5) for r in maker.key_for(maker.subject("cccd", f"0{i:011d}"), EXPIRES)[2]]
    messages = key_messages(letters, namespace)
    assert {topic for topic, _, _ in messages} == {scoped(KEYS_DEAD_LETTERS, namespace).name}
    await produce(kafka_bootstrap, messages[0][0], [(key, value, []) for _, key, value in messages])
    await publish(kafka_bootstrap, namespace, dossier("e-minh", code="D-MINH", applicant=MINH))
    start_notify()
    await eventually_async(lambda: len(fake.texts()) == 1, timeout=60, interval=0.2, what="Minh's SMS")
    [sms] = [r.body for r in fake.accepted.values() if r.path == "/sms"]
    assert sms["to"] == MINH["phone"] and "D-MINH" in sms["text"]
    [read] = [line for line in _lines(tmp_path / "notify.log") if line.get("event") == "privacy.keys_read"]
    assert (read["keys"], read["records"]) == (1, 1), read


def _lines(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
