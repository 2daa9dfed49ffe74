"""notify with sealed applicants on the real broker: contacts opened only for delivery; an erased applicant skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from services.privacy.erase import erase_cccd
from tests.kafkatools import read_all
from tests.notify.conftest import MailSink, StartNotify, caught_up, publish, statuses
from tests.notify.events import dossier
from tests.privacy.keys import PEPPER
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

LAN = {"name": "Nguyễn Thị Lan", "id_number": "008123456789", "phone": "0911111111", "preferred_locale": "vi"}
MINH = {"name": "Trần Văn Minh", "id_number": "001099000111", "phone": "0922222222", "preferred_locale": "vi"}


async def test_an_erased_applicant_is_skipped_and_the_other_is_told(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        smtp: tuple[MailSink, int], tmp_path: Path) -> None:
    """Minh's SMS goes out to his number; Lan, erased, is skipped with status `erased`; no topic or log has either."""
    await publish(kafka_bootstrap, namespace, dossier("e-lan", code="D-LAN", applicant=LAN),
                  dossier("e-minh", code="D-MINH", applicant=MINH))
    await erase_cccd(KafkaConnection(bootstrap=kafka_bootstrap), namespace, PEPPER, LAN["id_number"],
                     requested_by="operator:tester")
    start_notify()
    await eventually_async(lambda: len(fake.texts()) == 1, timeout=60, interval=0.2, what="Minh's SMS")
    await caught_up(kafka_bootstrap, namespace)
    [sms] = [r.body for r in fake.accepted.values() if r.path == "/sms"]
    assert sms["to"] == MINH["phone"] and "D-MINH" in sms["text"]
    status = statuses(await read_all(kafka_bootstrap, notify_topics.status, idle=1))
    outcomes = sorted((s["event_id"], s["outcome"]) for s in status if s["recipient_ref"] == "applicant")
    assert outcomes == [("e-lan", "erased"), ("e-minh", "sent")]
    written = b""
    for topic in (notify_topics.status, notify_topics.ledger, notify_topics.dlq):
        written += b"".join((r.value or b"") for r in await read_all(kafka_bootstrap, topic, idle=0.5))
    assert written, "notify wrote its status and ledger"
    log = (tmp_path / "notify.log").read_bytes()
    for person in (LAN, MINH):
        for field in ("name", "id_number", "phone"):
            assert person[field].encode() not in written, f"{field} in clear on a notify topic"
            assert person[field].encode() not in log, f"{field} in notify's log"
