"""Fixtures for notify on the real broker: a namespace, local fake providers (HTTP + SMTP), worker processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiosmtpd.controller import Controller

from schemas.envelope import Event
from schemas.personal import KeyRecord
from schemas.topics import CANONICAL, PRIVACY_AUDIT, Group, group_id, scoped
from schemas.wire import encode
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from services.privacy import crypto
from services.privacy.applicant import seal_event
from services.privacy.store import key_messages
from tests.kafkatools import Record, free_port, produce, start_service, stop_service
from tests.privacy.keys import KEK, PEPPER, keyring
from tests.waiting import eventually_async

StartNotify = Callable[..., subprocess.Popen[bytes]]
KEYRING = keyring()
"""The test keys of `tests.privacy.keys`: `publish` seals with them, notify opens with them (`PRIVACY_ENV`)."""
PRIVACY_ENV = {"PRIVACY_KEK": crypto.b64(KEK), "PRIVACY_PEPPER": crypto.b64(PEPPER)}


class MailSink:
    """aiosmtpd handler: counts mails per Message-ID (the notification id)."""

    def __init__(self) -> None:
        self.by_id: Counter[str] = Counter()
        self.bodies: dict[str, str] = {}
        self.dates: dict[str, str | None] = {}

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        from email import message_from_bytes

        msg = message_from_bytes(envelope.content)  # type: ignore[attr-defined]
        mid = str(msg["Message-ID"]).strip("<>").split("@")[0]
        self.by_id[mid] += 1
        self.bodies[mid] = msg.get_payload(decode=True).decode()
        self.dates[mid] = msg["Date"]
        return "250 OK"


def ready(port: int) -> bool:
    """Whether the notify worker serving on `port` says it is ready (assigned, restored)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.HTTPError, OSError):
        return False


@pytest.fixture
def namespace(unique: str) -> str:
    return f"n{unique}"


@pytest.fixture
def notify_topics(kafka_bootstrap: str, namespace: str) -> Names:
    names = Names(namespace)
    # and the privacy audit: the privacy tests erase applicants here, and an erasure never makes its topics
    audit = scoped(PRIVACY_AUDIT, namespace)
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [*names.specs, audit]))
    return names


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    providers = FakeProviders(webhook_secrets={"prov-08": "s3cret"})
    await providers.start()
    yield providers
    await providers.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[MailSink, int]]:
    sink, port = MailSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


DIRECTORY = """
[communes."*"]
centre = [{ ref = "centre:inbox", channel = "email", email = "centre@example.gov.vn" }]
centre_head = [{ ref = "centre:head", channel = "email", email = "head@example.gov.vn" }]
operators = [{ ref = "operator:loa", channel = "sms", phone = "0900000001" }]
[communes."*".officers]
"cb-01" = { ref = "officer:cb-01", channel = "email", email = "cb01@example.gov.vn" }
[communes."*".villages]
"*" = [{ ref = "village:head", channel = "sms", phone = "0900000002", locale = "km" }]
[communes."*".clusters]
"C1" = [{ ref = "operator:c1", channel = "sms", phone = "0900000004" }]
"""


@pytest.fixture
def start_notify(kafka_bootstrap: str, namespace: str, notify_topics: Names, fake: FakeProviders,
                 smtp: tuple[MailSink, int], tmp_path: Path) -> Iterator[StartNotify]:
    """Starts `python -m services.notify` on the namespace (quiet hours off unless asked); stops it after."""
    procs: list[subprocess.Popen[bytes]] = []
    (tmp_path / "directory.toml").write_text(DIRECTORY, encoding="utf-8")
    (tmp_path / "subscribers.toml").write_text(
        f'[[subscribers]]\nname = "prov-08"\nurl = "{fake.url}/hooks/prov-08"\nsecret = "s3cret"\n'
        'event_types = ["vn.communebus.dossier.status-changed.v1"]\nprovinces = ["08"]\n', encoding="utf-8")

    def start(**env: str) -> subprocess.Popen[bytes]:
        base = {
            "KAFKA_BOOTSTRAP": kafka_bootstrap, "NOTIFY_NAMESPACE": namespace, "NOTIFY_HTTP_PORT": str(free_port()),
            "NOTIFY_DIRECTORY_FILE": str(tmp_path / "directory.toml"),
            "NOTIFY_SUBSCRIBERS_FILE": str(tmp_path / "subscribers.toml"), "NOTIFY_SMS_URL": fake.url,
            "NOTIFY_ZALO_URL": fake.url, "NOTIFY_SMTP_PORT": str(smtp[1]), "NOTIFY_QUIET_START": "00:00",
            "NOTIFY_QUIET_END": "00:00", "NOTIFY_DEADLINES": "false", "NOTIFY_DEADLINE_WEB_PORT": str(free_port()),
            "NOTIFY_RETRY_BASE_S": "0.2", "NOTIFY_RETRY_CAP_S": "2", **PRIVACY_ENV,
        }
        proc = start_service("services.notify", {**base, **env}, tmp_path / "notify.log")
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        stop_service(p, timeout=20)


async def publish(bootstrap: str, namespace: str, *events: Event) -> None:
    """Canonical events onto the namespace's canonical topics, as intake writes them (binary mode, applicant sealed).

    One producer per topic, all records at once: a burst arrives as a burst (not one connection per event).
    """
    from schemas.events import FAMILY_OF_TYPE

    by_topic: dict[str, list[Record]] = {}
    keys: list[KeyRecord] = []
    for e in events:
        sealed, new_keys = seal_event(KEYRING, e)  # as intake seals it (ADR 0015)
        keys += new_keys
        rec = encode(sealed)
        topic = scoped(CANONICAL[FAMILY_OF_TYPE[e.type]], namespace).name
        by_topic.setdefault(topic, []).append((rec.key, rec.value, rec.headers))
    key_records: dict[str, list[Record]] = {}
    for topic, key, value in key_messages(keys, namespace):
        key_records.setdefault(topic, []).append((key, value, []))
    for topic, records in key_records.items():  # keys first, as intake's transaction holds them with the events
        await produce(bootstrap, topic, records)
    for topic, records in by_topic.items():
        await produce(bootstrap, topic, records)


async def unconsumed(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    """How many records of `topics` (read_committed) lie after `group`'s committed offsets; 0 once it is done.

    Counted by reading rather than as end offset minus committed offset: a transactional topic ends with a
    commit marker, and a consumer commits the offset after its last record, never past that marker.
    """
    conn = KafkaConnection(bootstrap=bootstrap)
    admin = clients.admin(conn, client_id="tests")
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    parts = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    assert parts, f"no partitions for {topics}"
    reader = clients.consumer(conn, client_id="tests")
    await reader.start()
    try:
        reader.assign(parts)
        fresh = [tp for tp in parts if tp not in committed or committed[tp].offset < 0]
        for tp in set(parts) - set(fresh):
            reader.seek(tp, committed[tp].offset)
        if fresh:  # one reset for all: one at a time, each waited for the fetch under way (0.5 s a partition)
            await reader.seek_to_beginning(*fresh)
        end, count = await reader.end_offsets(parts), 0
        async with asyncio.timeout(30):  # reading what is there is quick; a hang here is a bug of this helper
            while [tp for tp in parts if await reader.position(tp) < end[tp]]:
                batch = await reader.getmany(timeout_ms=200)
                count += sum(len(records) for records in batch.values())
        return count
    finally:
        await reader.stop()


async def group_caught_up(bootstrap: str, group: str, topics: Sequence[str],
                          timeout: float = 60) -> None:  # noqa: ASYNC109 - the same call shape as `eventually`
    """Wait until `group` has committed every record of `topics` (read_committed)."""

    async def no_lag() -> bool:
        left = await unconsumed(bootstrap, group, topics)
        assert left == 0, f"{left} records not yet committed by {group}"
        return True

    await eventually_async(no_lag, timeout=timeout, interval=0.5, what=f"{group} caught up with {', '.join(topics)}")


async def caught_up(bootstrap: str, namespace: str) -> None:
    """Wait until notify's group has committed every input record: each one's notifications are all done.

    A record is committed only once all its notifications are resolved (ADR 0012's fence makes a revoked
    worker finish its calls first), so after this nothing is in flight or left to redeliver: a duplicate
    send would already have reached the provider, and what a test counts is final.
    """
    names = Names(namespace)
    inputs = [names.dossier, names.mobile_team, names.announcement, names.alerts, names.replays]
    await group_caught_up(bootstrap, group_id(Group.NOTIFY, namespace), inputs)


def statuses(records: list) -> list[dict[str, object]]:  # type: ignore[type-arg]
    return [json.loads(r.value) for r in records]
