"""Erasure notices on the real broker (ADR 0035): a webhook subscriber that receives applicants' data is told of each
erasure, once, with the subject its webhooks named, however long it was down and across a restart of notify."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.personal import ErasureNotice
from services.common.settings import KafkaConnection
from services.notify.erasures import NOTICE_TYPE, NoticeSender, notice_group, notice_request
from services.notify.fake_providers import FakeProviders, Received
from services.notify.policy import Backoff
from services.notify.subscribers import Subscriber
from services.notify.topics import Names
from services.privacy.erase import erase_subject
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture
from tests.kafkatools import produce
from tests.notify.conftest import StartNotify, group_caught_up, publish
from tests.notify.events import dossier
from tests.published import problems
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
HOOK = "/hooks/prov-08"


def hooks(fake: FakeProviders, of_type: str | None = None) -> list[Received]:
    return [r for r in fake.accepted.values()
            if r.path == HOOK and (of_type is None or r.body["event"]["type"] == of_type)]


async def test_a_subscriber_receiving_applicants_is_told_of_each_erasure_once_after_its_outage_and_a_restart(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        tmp_path: Path) -> None:
    """prov-08 receives applicants' data: its webhook of a dossier opens the applicant, with the pseudonymous subject.
    The applicant is erased while the subscriber is down (503): the notice waits and is tried again; once the
    subscriber is back it gets one signed `applicant-erased` CloudEvent naming that subject, and no more after notify
    restarts (its offset committed). A second erasure's notice follows it, once."""
    (tmp_path / "subscribers.toml").write_text(
        f'[[subscribers]]\nname = "prov-08"\nurl = "{fake.url}{HOOK}"\nsecret = "s3cret"\n'
        'event_types = ["vn.communebus.dossier.status-changed.v1"]\nprovinces = ["08"]\ninclude_personal_data = true\n',
        encoding="utf-8")
    fake.webhook_secrets["prov-08"] = "s3cret"
    worker = start_notify()
    await publish(kafka_bootstrap, namespace, dossier("er-1", code="D-ER-1"), dossier("er-2", code="D-ER-2"))
    await eventually_async(lambda: len(hooks(fake)) == 2, timeout=60, interval=0.2, what="both webhooks")
    subjects = [r.body["event"]["data"]["applicant"]["subject"] for r in hooks(fake)]
    assert all(hooks(fake)[0].body["event"]["data"]["applicant"].get("phone") for _ in subjects)  # opened, in clear

    fake.outage(600)
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    first = await erase_subject(conn, namespace, subjects[0], requested_by="officer:test")
    await eventually_async(lambda: fake.rejected >= 2, timeout=60, interval=0.2, what="the notice tried, refused")
    fake.faults.outage_until = 0
    await eventually_async(lambda: len(hooks(fake, NOTICE_TYPE)) == 1, timeout=90, interval=0.2, what="the notice")
    [notice] = hooks(fake, NOTICE_TYPE)
    event = notice.body["event"]
    assert (event["id"], event["subject"], event["data"]["subject"]) == (first.erasure_id, subjects[0], subjects[0])
    assert "officer" not in orjson.dumps(event).decode() and fake.bad_signatures == 0

    await group_caught_up(kafka_bootstrap, notice_group(namespace, "prov-08"), [notify_topics.erasures])
    worker.terminate()
    worker.wait(30)
    start_notify()
    second = await erase_subject(conn, namespace, subjects[1], requested_by="officer:test")
    await eventually_async(lambda: len(hooks(fake, NOTICE_TYPE)) == 2, timeout=90, interval=0.2,
                           what="the second notice")
    await group_caught_up(kafka_bootstrap, notice_group(namespace, "prov-08"), [notify_topics.erasures])
    assert sorted(r.body["event"]["id"] for r in hooks(fake, NOTICE_TYPE)) == sorted([first.erasure_id,
                                                                                        second.erasure_id])
    assert fake.successes[notice.key] == 1 and fake.replays[notice.key] == 0  # not sent again after the restart


def _subscriber(name: str) -> Subscriber:
    return Subscriber.model_validate({"name": name, "url": "https://hooks.example.vn/h", "secret": "s" * 16,
                                      "include_personal_data": True})


NOTICE = ErasureNotice(erasure_id="e-1", subject="a-" + "x" * 43, erased_at=datetime(2026, 12, 4, 5, 0, tzinfo=UTC))


@pytest.mark.unit
def test_a_notice_is_a_cloudevent_naming_the_subject_under_an_id_of_the_erasure_and_the_subscriber() -> None:
    a, again, b = (notice_request(NOTICE, _subscriber(n)) for n in ("prov-08", "prov-08", "prov-09"))
    assert a.notification_id == again.notification_id != b.notification_id  # a resend has the same Webhook-Id
    assert a.delivery_key == a.notification_id and a.recipient.ref == "subscriber:prov-08"
    event = orjson.loads(a.payload or "")
    assert {k: event[k] for k in ("specversion", "id", "type", "subject")} == {
        "specversion": "1.0", "id": "e-1", "type": NOTICE_TYPE, "subject": NOTICE.subject}
    assert event["data"] == {"subject": NOTICE.subject, "erased_at": "2026-12-04T05:00:00Z"}
    assert problems(event) == []  # the published schema of its type (schemas/jsonschema) describes it


@pytest.mark.unit
def test_the_erasure_webhooks_schema_refuses_what_no_notice_is() -> None:
    event = orjson.loads(notice_request(NOTICE, _subscriber("prov-08")).payload or "")
    for member in ("id", "subject", "time", "data"):
        assert problems({k: v for k, v in event.items() if k != member}), member
    assert problems({**event, "data": {**event["data"], "name": "Nguyen Van A"}})  # no personal data beside it
    assert problems({**event, "type": "vn.communebus.dossier.status-changed.v1"}, NOTICE_TYPE)


def taking_sender() -> tuple[NoticeSender, list[str]]:
    """A sender whose subscriber takes every notice, and the payloads it was given."""
    calls: list[str] = []

    class Takes:
        async def send(self, message: Any) -> None:
            calls.append(message.request.payload)

    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", _subscriber("prov-08"),
                          Takes(), Backoff(), 10_000, 3_000)  # type: ignore[arg-type]
    return sender, calls


@pytest.mark.unit
@given(st.binary(max_size=300) | st.none() | st.just(NOTICE.model_dump_json().encode()))
@settings(max_examples=200, deadline=None)
def test_a_record_that_is_no_notice_is_skipped_without_a_call(value: bytes | None) -> None:
    """Whatever the topic holds, `tell` ends: a notice is sent (here to a subscriber that takes it), anything else is
    skipped, counted and never raises."""
    sender, calls = taking_sender()
    record = SimpleNamespace(value=value, offset=7)
    assert asyncio.run(sender.tell(record)) is True  # type: ignore[arg-type]
    try:
        ErasureNotice.model_validate_json(value or b"", extra="ignore")
    except ValueError:
        assert calls == []
    else:
        assert len(calls) == 1


NEWER = {**NOTICE.model_dump(mode="json"), "legal_basis": "decree-13-art-16", "scope": {"keys": 2}}
"""A notice as a newer `ErasureNotice` may write it: members this version does not know."""


@pytest.mark.unit
@pytest.mark.parametrize("fields, sent", [
    (NEWER, True),
    ({k: v for k, v in NEWER.items() if k != "subject"}, False),
    ({**NEWER, "erased_at": 1764824400}, False),
    ({**NEWER, "subject": ["a-" + "x" * 43]}, False),
], ids=["newer-members", "subject-missing", "time-a-number", "subject-a-list"])
async def test_a_notice_from_a_newer_schema_is_sent_and_one_wrong_in_a_member_read_is_skipped(
        fields: dict[str, Any], sent: bool) -> None:
    """A notice with members a newer schema added (a compatible change an eraser may ship before notify) is sent,
    naming its subject: read strictly it was skipped and committed, and the subscriber never heard of that erasure.
    A member notify reads missing or of the wrong type still skips the record."""
    sender, calls = taking_sender()
    record = SimpleNamespace(value=orjson.dumps(fields), offset=7)
    assert await sender.tell(record) is True  # type: ignore[arg-type]
    assert [orjson.loads(c)["subject"] for c in calls] == ([NOTICE.subject] if sent else [])


@pytest.mark.unit
async def test_a_notice_not_taken_is_fetched_again_after_a_back_off_and_committed_once_taken() -> None:
    """The subscriber refuses twice (a 401: its secret out of step), then takes it. Each refusal seeks back to the
    notice and returns to polling (a subscriber down for hours must not push the consumer out of its group), nothing
    is committed until it is taken, then the offset after it; the notice after it is sent only then, at the next
    poll. A refused commit (the partition moved on) is counted, not the run's end."""
    from aiokafka import TopicPartition
    from aiokafka.errors import CommitFailedError

    from services.notify.channels.base import DeliveryError

    tp = TopicPartition("t", 0)
    notices = [NOTICE.model_copy(update={"erasure_id": f"e-{i}"}).model_dump_json().encode() for i in range(2)]

    class Consumer:
        def __init__(self) -> None:
            self.position, self.commits, self.seeks = 0, [], []  # type: ignore[var-annotated]
            self.refuse_commit = False

        async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
            return {tp: [SimpleNamespace(value=v, offset=o) for o, v in enumerate(notices)
                         if o >= self.position][:max_records]}

        def assignment(self) -> set[TopicPartition]:
            return {tp}

        def seek(self, partition: TopicPartition, offset: int) -> None:
            self.seeks.append(offset)
            self.position = offset

        async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
            if self.refuse_commit:
                raise CommitFailedError("rebalanced")
            self.commits.append(offsets[tp].offset)
            self.position = offsets[tp].offset

    sent: list[str] = []
    answers = iter([False, False, True, True, True])

    class Subscriber401:
        async def send(self, message: Any) -> None:
            if not next(answers):
                raise DeliveryError("http_401", retryable=False)
            sent.append(orjson.loads(message.request.payload)["id"])

    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", _subscriber("prov-08"),
                          Subscriber401(), Backoff(base_s=0.001, cap_s=0.001), 10_000, 3_000)  # type: ignore[arg-type]
    consumer = Consumer()
    for _ in range(2):
        await sender.poll(consumer)  # type: ignore[arg-type]
    assert (consumer.seeks, consumer.commits, sent) == ([0, 0], [], [])
    await sender.poll(consumer)  # type: ignore[arg-type]
    assert (consumer.commits, sent) == ([1], ["e-0"])
    await sender.poll(consumer)  # type: ignore[arg-type]
    assert (consumer.commits, sent) == ([1, 2], ["e-0", "e-1"])
    consumer.refuse_commit = True
    consumer.position = 1
    await sender.poll(consumer)  # type: ignore[arg-type]  # the commit refused: logged and counted, no exception
    assert sent == ["e-0", "e-1", "e-1"]


async def test_a_notice_taken_while_its_partition_moved_away_does_not_end_the_sender(
        kafka_bootstrap: str, namespace: str, notify_topics: Names) -> None:
    """Another notify worker joins the subscriber's group while a notice's call is under way and takes the topic's one
    partition (a deploy, a scale-out): the call ends, the sender goes on polling, and leaves the notice to the new
    owner (it commits nothing for a partition it no longer holds). It raised aiokafka's IllegalStateError ("not
    assigned") from the commit, which ended the sender's supervised task and so the whole notify run."""
    from aiokafka import AIOKafkaConsumer

    from services.common.clients import connection_options

    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    topic, group = notify_topics.erasures, notice_group(namespace, "prov-08")
    notices = [NOTICE.model_copy(update={"erasure_id": f"e-{i}"}) for i in range(2)]
    await produce(kafka_bootstrap, topic, [(n.subject.encode(), n.model_dump_json().encode(), []) for n in notices])
    # the member id is the client id and a uuid: "a-..." sorts first, so the assignor gives it the partition
    thief = AIOKafkaConsumer(topic, **connection_options(conn), client_id="a-newer-worker", group_id=group,
                             enable_auto_commit=False, session_timeout_ms=10_000, heartbeat_interval_ms=500)
    sent: list[str] = []

    class Slow:
        async def send(self, message: Any) -> None:
            if not sent:  # the first call outlasts the rebalance
                await thief.start()
                await eventually_async(lambda: bool(thief.assignment()), timeout=60, interval=0.2,
                                       what="the partition taken over")
            sent.append(orjson.loads(message.request.payload)["id"])

    sender = NoticeSender(conn, topic, namespace, _subscriber("prov-08"), Slow(),  # type: ignore[arg-type]
                          Backoff(base_s=0.01, cap_s=0.01), 10_000, 500)
    task = asyncio.create_task(sender.run())
    try:
        await eventually_async(lambda: len(sent) >= 1, timeout=90, interval=0.2, what="the first call")
        await asyncio.sleep(3)
        assert not task.done(), f"the sender ended: {task.exception()!r}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await thief.stop()


@pytest.mark.unit
async def test_a_notice_that_meets_a_bug_waits_and_is_tried_again_without_ending_notify(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A subscriber whose URL is longer than a request's recipient may hold (500 characters; the subscribers file takes
    any length), or a bug in the call: the notice is not taken, counted as waiting and tried again, its error logged
    by type and place only. It raised out of the sender's supervised task, which ended the notify run; the notice,
    never committed, ended every run after it: one subscriber's notice stopped every citizen's notifications."""
    from services.notify import metrics

    class Takes:
        async def send(self, message: Any) -> None:
            pass

    class Broken:
        async def send(self, message: Any) -> None:
            raise RuntimeError("a text that may quote 0912345678")

    long_url = Subscriber.model_validate({"name": "prov-08", "url": "https://hooks.example.vn/h?t=" + "x" * 600,
                                          "secret": "s" * 16, "include_personal_data": True})
    record = SimpleNamespace(value=NOTICE.model_dump_json().encode(), offset=3)
    for sub, webhooks in ((long_url, Takes()), (_subscriber("prov-08"), Broken())):
        sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", sub, webhooks,  # type: ignore[arg-type]
                              Backoff(), 10_000, 3_000)
        assert await sender.tell(record) is False  # type: ignore[arg-type]
        assert metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get() == 1
    assert "0912345678" not in capsys.readouterr().out


@pytest.mark.unit
async def test_a_back_off_longer_than_the_poll_interval_allows_ends_in_time_for_the_next_poll() -> None:
    """With NOTIFY_RETRY_CAP_S at 900 s, a notice refused after a 40-second call waits 110 s, not 450 to 900: the
    wait ends within half of `max.poll.interval.ms` (300 s) of the poll. It slept the whole back-off, the group
    dropped the sender meanwhile, and it then found the partition gone, cleared the waiting gauge and started its
    back-off over: ErasureNoticeWaiting never fired."""
    from aiokafka import TopicPartition

    from services.notify import metrics
    from services.notify.channels.base import DeliveryError

    tp, now, waits = TopicPartition("t", 0), [0.0], []

    class Consumer:
        async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
            return {tp: [SimpleNamespace(value=NOTICE.model_dump_json().encode(), offset=0)]}

        def assignment(self) -> set[TopicPartition]:
            return {tp}

        def seek(self, partition: TopicPartition, offset: int) -> None:
            pass

    class SlowAndDown:
        async def send(self, message: Any) -> None:
            now[0] += 40.0
            raise DeliveryError("http_503")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", _subscriber("prov-08"),
                          SlowAndDown(), Backoff(base_s=900, cap_s=900), 10_000, 3_000,  # type: ignore[arg-type]
                          clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await sender.poll(Consumer())  # type: ignore[arg-type]
    assert waits == [110.0] * 3 and sender.attempts == 3
    assert sender.timeouts["max_poll_interval_ms"] == 300_000
    assert metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get() == 1


async def test_a_sender_waiting_out_a_back_off_past_the_poll_interval_keeps_its_partition(
        kafka_bootstrap: str, namespace: str, notify_topics: Names) -> None:
    """The case above on the broker, scaled down, with two notify workers' senders in the subscriber's group:
    `max.poll.interval.ms` 6 s, back-offs of 10 to 20 s, the subscriber down. The sender holding the notice keeps it
    and goes on trying, the waiting gauge at 1 at every call. It slept past the interval and left the group: the
    notice went to the other worker and back, each handover clearing the waiting gauge and starting the back-off
    over (measured: calls alternating between the two, the gauge at 0 at some), so ErasureNoticeWaiting never held
    for its 30 minutes."""
    from services.notify import metrics
    from services.notify.channels.base import DeliveryError

    await produce(kafka_bootstrap, notify_topics.erasures, [(b"k", NOTICE.model_dump_json().encode(), [])])
    calls: list[tuple[int, float]] = []

    class Down:
        def __init__(self, worker: int) -> None:
            self.worker = worker

        async def send(self, message: Any) -> None:
            calls.append((self.worker, metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get()))
            raise DeliveryError("http_503")

    class Counted(NoticeSender):
        handovers = 0

        def _handed_over(self) -> None:
            self.handovers += 1
            super()._handed_over()

    senders = [Counted(KafkaConnection(bootstrap=kafka_bootstrap), notify_topics.erasures, namespace,
                       _subscriber("prov-08"), Down(worker), Backoff(base_s=20, cap_s=20),  # type: ignore[arg-type]
                       10_000, 500, max_poll_interval_ms=6_000) for worker in range(2)]
    tasks = [asyncio.create_task(s.run()) for s in senders]
    try:
        await eventually_async(lambda: len(calls) >= 8 or any(t.done() for t in tasks), timeout=150, interval=0.2,
                               what="eight calls for the notice")
        assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    holder = calls[-1][0]
    # one holder, one waiting notice, said so throughout. Not the first three calls: both senders share this process's
    # gauge, and the one the notice moved from when both joined clears it when it notices, after the new holder's
    # first call or two (in notify each worker is a process of its own; CI run of f68778d: (1, 0.0) as third call)
    assert calls[-5:] == [(holder, 1.0)] * 5, calls
    assert sum(s.handovers for s in senders) <= 1  # at most the move when both joined


async def _stable_members(conn: KafkaConnection, group: str) -> int:
    """How many members `group` has once stable (0 while it rebalances or is empty)."""
    from services.common import clients

    admin = clients.admin(conn)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        _, _, state, _, _, members, *_ = response.groups[0]
        return len(members) if state == "Stable" else 0
    finally:
        await admin.close()


async def test_a_backlog_of_slow_notices_is_told_once_each_by_one_of_two_workers(
        kafka_bootstrap: str, namespace: str, notify_topics: Names) -> None:
    """The backlog case of `test_erasure_notice_polls` on the broker, scaled down, with two notify workers' senders in
    the subscriber's group: `max.poll.interval.ms` 6 s, twelve notices waiting, a subscriber taking each in 1 s. Each
    is told once, in order, by one worker. The holder told its whole fetch (12 s) before polling again: the group
    dropped it after 6, the other worker took the notices from the last one committed and told them again."""
    conn, topic, group = KafkaConnection(bootstrap=kafka_bootstrap), notify_topics.erasures, notice_group(namespace,
                                                                                                         "prov-08")
    told: list[tuple[int, str]] = []

    class Slow:
        def __init__(self, worker: int) -> None:
            self.worker = worker

        async def send(self, message: Any) -> None:
            await asyncio.sleep(1)
            told.append((self.worker, orjson.loads(message.request.payload)["id"]))

    senders = [NoticeSender(conn, topic, namespace, _subscriber("prov-08"), Slow(worker),  # type: ignore[arg-type]
                            Backoff(), 10_000, 500, max_poll_interval_ms=6_000) for worker in range(2)]
    tasks = [asyncio.create_task(s.run()) for s in senders]
    try:

        async def both_in() -> bool:
            return await _stable_members(conn, group) == 2

        await eventually_async(both_in, timeout=60, interval=0.5, what="both senders in the group, stable")
        notices = [NOTICE.model_copy(update={"erasure_id": f"e-{i}"}) for i in range(12)]
        await produce(kafka_bootstrap, topic, [(n.subject.encode(), n.model_dump_json().encode(), []) for n in notices])
        await group_caught_up(kafka_bootstrap, group, [topic], timeout=120)
        await asyncio.sleep(2)  # a notice told again after the last commit would show by now
        assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [erasure for _, erasure in told] == [n.erasure_id for n in notices], told
    assert len({worker for worker, _ in told}) == 1, told


@pytest.mark.unit
async def test_a_worker_that_lost_the_waiting_notice_to_another_no_longer_says_one_waits() -> None:
    """A notice refused here, then the partition moved to another worker (which tries it, and says so itself): this
    worker's `notify_erasure_notices_waiting` goes back to 0. It stayed at 1 until this worker next sent a notice,
    and ErasureNoticeWaiting (`max by subscriber`) fired for a notice long taken."""
    from aiokafka import TopicPartition

    from services.notify import metrics
    from services.notify.channels.base import DeliveryError

    tp = TopicPartition("t", 0)
    held = {tp}

    class Consumer:
        async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
            return {tp: [SimpleNamespace(value=NOTICE.model_dump_json().encode(), offset=0)]} if held else {}

        def assignment(self) -> set[TopicPartition]:
            return set(held)

        def seek(self, partition: TopicPartition, offset: int) -> None:
            pass

    class Down:
        async def send(self, message: Any) -> None:
            raise DeliveryError("http_503")

    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", _subscriber("prov-08"),
                          Down(), Backoff(base_s=0.001, cap_s=0.001), 10_000, 3_000)  # type: ignore[arg-type]
    await sender.poll(Consumer())  # type: ignore[arg-type]
    assert metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get() == 1
    held.clear()  # rebalanced: the partition is another worker's
    await sender.poll(Consumer())  # type: ignore[arg-type]
    assert metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get() == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_sender_cancelled_while_the_broker_does_not_answer_ends_within_the_client_close_limit(
        own_broker: OwnBroker, namespace: str) -> None:  # noqa: F811
    """The broker stops answering (frozen: a partition, a stalled host; not gone, which refuses at once) and notify
    stops: the cancelled sender ends within `CLOSE_TIMEOUT_S`, as every other client of notify's (`close_within`).
    Its unbounded `consumer.stop` waited the whole request timeout (40 s) for the group's leave, outside the stop
    budget (`app.stop_budget_s`)."""
    import os
    import signal
    import time

    from services.common.admin import ensure_topics
    from services.common.closing import CLOSE_TIMEOUT_S

    conn = KafkaConnection(bootstrap=own_broker.bootstrap)
    names = Names(namespace)
    await ensure_topics(conn, names.specs)
    sent: list[str] = []

    class Takes:
        async def send(self, message: Any) -> None:
            sent.append(orjson.loads(message.request.payload)["id"])

    await produce(own_broker.bootstrap, names.erasures, [(b"k", NOTICE.model_dump_json().encode(), [])])
    sender = NoticeSender(conn, names.erasures, namespace, _subscriber("prov-08"), Takes(),  # type: ignore[arg-type]
                          Backoff(), 10_000, 3_000)
    task = asyncio.create_task(sender.run())
    await eventually_async(lambda: len(sent) == 1, timeout=60, what="the notice sent")
    await asyncio.sleep(2)  # committed, polling
    broker = int((own_broker.state / "kafka.pid").read_text().strip())
    os.kill(broker, signal.SIGSTOP)
    try:
        await asyncio.sleep(1)
        stopping = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        took = time.monotonic() - stopping
    finally:
        os.kill(broker, signal.SIGCONT)
    assert took < CLOSE_TIMEOUT_S + 3, f"the sender took {took:.1f} s to end"


async def test_a_sender_whose_group_join_is_held_up_says_its_notices_wait_until_it_joins(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender's consumer cannot join its group (here a member stalls the join; a coordinator not available does
    the same, for ever, while notify's own groups are fine): past `JOIN_WAIT_S` it logs so and its waiting gauge is 1,
    so `ErasureNoticeWaiting` fires if it lasts; once it joins, 0, and the notice goes. Before, every signal said
    "fine" while the subscriber's notices waited."""
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from structlog.testing import capture_logs

    from services.common import clients
    from services.notify import erasures, metrics
    from tests.common.test_join_stop_kafka import HOLD_MS, Stalled

    monkeypatch.setattr(erasures, "JOIN_WAIT_S", 1.0)
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    topic = notify_topics.erasures
    stalled = Stalled()
    holder = clients.consumer(conn, client_id="tests-notice-holder", group_id=notice_group(namespace, "prov-08"),
                              session_timeout_ms=HOLD_MS, rebalance_timeout_ms=HOLD_MS, heartbeat_interval_ms=1000,
                              partition_assignment_strategy=(RangePartitionAssignor, RoundRobinPartitionAssignor))
    holder.subscribe([topic], listener=stalled)
    sent: list[str] = []

    class Takes:
        async def send(self, message: Any) -> None:
            sent.append(orjson.loads(message.request.payload)["id"])

    def waiting() -> float:
        return float(metrics.ERASURE_NOTICES_WAITING.labels("prov-08")._value.get())

    await produce(kafka_bootstrap, topic, [(b"k", NOTICE.model_dump_json().encode(), [])])
    await holder.start()
    sender = NoticeSender(conn, topic, namespace, _subscriber("prov-08"), Takes(),  # type: ignore[arg-type]
                          Backoff(), 10_000, 3_000)
    task: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(stalled.assigned.wait(), timeout=60)
        with capture_logs() as logs:
            task = asyncio.create_task(sender.run())
            await asyncio.wait_for(stalled.rebalancing.wait(), timeout=60)  # the sender's join waits for the holder
            await eventually_async(lambda: waiting() == 1, timeout=30, what="the sender said to wait")
            assert not sent
            stalled.release.set()
            await holder.stop()  # it leaves: the join completes without it
            await eventually_async(lambda: sent == [NOTICE.erasure_id] and waiting() == 0, timeout=60,
                                   what="the notice sent once the sender joined")
        events = [e["event"] for e in logs if e["event"].startswith("notify.erasure_notices_")]
        assert events == ["notify.erasure_notices_not_joined", "notify.erasure_notices_joined"], logs
    finally:
        stalled.release.set()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await holder.stop()
