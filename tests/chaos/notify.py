"""notify under load for the chaos rows: dossier events sent at a steady rate, receipts counted at local providers.

The providers are the project's fake ones (`services.notify.fake_providers`, SMS, Zalo and signed webhooks) and an
SMTP sink, in this process. The oracle does not ask notify's rules: each status change of a province-08 dossier
must reach the providers as one SMS and one signed webhook to the subscriber `prov-08`, told apart by the dossier
code in what the provider received. Every request beyond the first for one of them is a delivery too (a provider
that did not honour the Idempotency-Key would have sent it twice), except for the requests a fault may leave in
flight (`resend_allowance`, 0 where nothing interrupts a send); anything else received (an e-mail, a request
naming no sent dossier) is a duplicate as well.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiosmtpd.controller import Controller

from schemas import wire
from schemas.events import FAMILY_OF_TYPE
from schemas.personal import KeyRecord
from schemas.topics import CANONICAL, Group, group_id, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from services.privacy.applicant import seal_event
from services.privacy.store import key_messages
from tests.chaos.injections import Coordinated
from tests.chaos.scenario import Counts, Load, Stage
from tests.cluster.tools import Feeder, Sent
from tests.faults import REPLICAS, Worker
from tests.kafkatools import free_port, produce
from tests.notify.conftest import DIRECTORY, KEYRING, PRIVACY_ENV, MailSink, caught_up
from tests.notify.events import COMMUNE, PARTITIONS, dossier, one_commune_per_partition
from tests.waiting import eventually_async

SECRET = "s3cret"
CODE = re.compile(rb"D-CHAOS-[0-9]+")
Delivery = tuple[str, str]
"""(what: "sms" or "webhook", the dossier code)."""
COORDINATED = Coordinated(group=lambda namespace: group_id(Group.NOTIFY, namespace))
"""notify's group (it writes no transactions: its ledger is idempotent by notification id, ADR 0012/0020)."""


def ready(worker: Worker) -> bool:
    """The worker's /readyz answers 200: assigned, caught up with the ledger, consuming."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/readyz", timeout=2) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


@dataclass
class NotifyLoad:
    """`events` dossier events sent at `per_second` to `workers` notify workers; mid-stream once `mid_stream` requests
    reached the providers. `resend_allowance`: requests the fault may leave in flight, sent again after it. With
    `spread`, the events go round one commune per canonical partition (every worker has work, whichever partitions
    it holds); else they are one commune's, in one partition."""

    events: int = 120
    per_second: float = 6
    mid_stream: int = 10
    workers: int = 1
    spread: bool = False
    env: dict[str, str] = field(default_factory=dict)
    fake: FakeProviders = field(default_factory=lambda: FakeProviders(webhook_secrets={"prov-08": SECRET}))
    sink: MailSink = field(default_factory=MailSink)
    smtp: Controller | None = None
    resend_allowance: int = 0
    every_partition: bool = False
    """With `spread`: progress is a delivery in every partition (each commune) of an event sent after the blow, so the
    partitions of a worker cut off were taken over; else any delivery is (the other worker delivering its own)."""
    expected: set[Delivery] = field(default_factory=set)
    sent_before: dict[float, int] = field(default_factory=dict)
    """Per recovery clock: how many events were acknowledged when progress was first asked for (`every_partition`)."""
    feeding: asyncio.Task[object] | None = None
    feeder: Feeder | None = None

    async def setup(self, stage: Stage) -> None:
        names = Names(stage.namespace)
        await ensure_topics(KafkaConnection(bootstrap=stage.bootstrap), names.specs,
                            replication_factor=REPLICAS if stage.cluster else None)
        await self.fake.start()
        self.smtp = Controller(self.sink, hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        (stage.workdir / "directory.toml").write_text(DIRECTORY, encoding="utf-8")
        (stage.workdir / "subscribers.toml").write_text(
            f'[[subscribers]]\nname = "prov-08"\nurl = "{self.fake.url}/hooks/prov-08"\nsecret = "{SECRET}"\n'
            'event_types = ["vn.communebus.dossier.status-changed.v1"]\nprovinces = ["08"]\n', encoding="utf-8")
        assert self.spread or not self.every_partition, "progress in every partition needs events in each"
        communes = one_commune_per_partition() if self.spread else [COMMUNE]
        events = [dossier(f"chaos-{i}", code=f"D-CHAOS-{i}", commune=communes[i % len(communes)])
                  for i in range(self.events)]
        self.expected = {(what, f"D-CHAOS-{i}") for i in range(self.events) for what in ("sms", "webhook")}
        sent: list[Sent] = []
        keys: list[KeyRecord] = []
        for e in events:  # as intake writes them: the applicant sealed, the keys first (ADR 0015)
            sealed, new_keys = seal_event(KEYRING, e)
            keys += new_keys
            rec = wire.encode(sealed)
            sent.append((scoped(CANONICAL[FAMILY_OF_TYPE[e.type]], stage.namespace).name, rec.key, rec.value,
                         rec.headers))
        for topic, key, value in key_messages(keys, stage.namespace):
            await produce(stage.bootstrap, topic, [(key, value, [])])
        for i in range(self.workers):
            self.start_worker(stage, f"notify-{i}")
        await eventually_async(lambda: self.owned(stage.live()), timeout=90, interval=0.2, what="notify ready")
        self.feeder = Feeder(stage.bootstrap, sent, self.per_second)
        self.feeding = asyncio.create_task(self.feeder.run())
        await eventually_async(lambda: len(self.fake.accepted) >= self.mid_stream, timeout=60, interval=0.1,
                               what="notify delivering")
        assert not self.feeding.done(), "the fault must land mid-stream: send for longer"

    def acked(self) -> int:
        return 0 if self.feeder is None else self.feeder.acked

    def start_worker(self, stage: Stage, name: str) -> Worker:
        assert self.smtp is not None
        files = stage.workdir
        env = {
            "KAFKA_BOOTSTRAP": stage.bootstrap_for(name), "NOTIFY_NAMESPACE": stage.namespace,
            "NOTIFY_DIRECTORY_FILE": str(files / "directory.toml"),
            "NOTIFY_SUBSCRIBERS_FILE": str(files / "subscribers.toml"), "NOTIFY_SMS_URL": self.fake.url,
            "NOTIFY_ZALO_URL": self.fake.url, "NOTIFY_SMTP_PORT": str(self.smtp.port), "NOTIFY_QUIET_START": "00:00",
            "NOTIFY_QUIET_END": "00:00", "NOTIFY_DEADLINES": "false", "NOTIFY_DEADLINE_WEB_PORT": str(free_port()),
            "NOTIFY_RETRY_BASE_S": "0.2", "NOTIFY_RETRY_CAP_S": "2", "NOTIFY_RETRY_MAX_ATTEMPTS": "40", **PRIVACY_ENV,
            **self.env,
        }
        worker = Worker.start("services.notify", name, env, "NOTIFY_HTTP_PORT", stage.workdir)
        stage.workers.append(worker)
        return worker

    async def owned(self, workers: Sequence[Worker]) -> bool:
        return bool(workers) and all(await asyncio.gather(*(asyncio.to_thread(ready, w) for w in workers)))

    async def progressed(self, stage: Stage, since: float) -> bool:
        """A provider answered a request with success after `since` (epoch seconds); with `every_partition`, one for
        an event acknowledged after progress was first asked for, in each partition (the events go round them)."""
        if not self.every_partition:
            return any(at > since for _, at in reversed(self.fake.arrivals))
        first = self.sent_before.setdefault(since, self.acked())
        later = {int(code[len(b"D-CHAOS-"):]) for received in list(self.fake.accepted.values())
                 for code in CODE.findall(orjson.dumps(received.body))}
        return {i % PARTITIONS for i in later if i >= first} == set(range(PARTITIONS))

    def receipts(self) -> tuple[Counter[Delivery], int]:
        """Requests per expected delivery (the first and every repeat, answered as a replay or not), and the count of
        anything else received: e-mails, requests naming no dossier code or more than one."""
        got: Counter[Delivery] = Counter()
        other = sum(self.sink.by_id.values())
        for key, received in list(self.fake.accepted.items()):
            codes = set(CODE.findall(orjson.dumps(received.body)))
            what = "sms" if received.path == "/sms" else "webhook" if received.path.startswith("/hooks/") else "?"
            requests = self.fake.successes[key] + self.fake.replays[key]
            if len(codes) == 1 and (what, (code := codes.pop().decode())) in self.expected:
                got[(what, code)] += requests
            else:
                other += requests
        return got, other

    async def settle(self, stage: Stage) -> None:
        assert self.feeding is not None
        await self.feeding

        def all_received() -> bool:
            missing = self.expected - set(self.receipts()[0])
            assert not missing, f"{len(missing)} of {len(self.expected)} notifications not received yet"
            return True

        await eventually_async(all_received, timeout=120, interval=0.2, what="every notification received")
        await caught_up(stage.bootstrap, stage.namespace)  # nothing in flight: a resend would have arrived by now

    def repeated_after(self, healed_at: float) -> int:
        """Requests answered after `healed_at` (epoch seconds) for notifications delivered before it: a worker cut off
        calling once healed, for what the group had given another meanwhile (the other's drain gives a partition
        back only once its calls reached the ledger, which its next owner reads first)."""
        first: dict[str, float] = {}
        late = 0
        for key, at in list(self.fake.arrivals):
            if key not in first:
                first[key] = at
            elif first[key] < healed_at <= at:
                late += 1
        return late

    async def account(self, stage: Stage) -> Counts:
        got, other = self.receipts()
        lost = len(self.expected - set(got))
        repeats = sum(n - 1 for n in got.values())
        zombie = 0 if stage.healed_at is None else self.repeated_after(stage.healed_at)
        duplicated = max(0, repeats - zombie - self.resend_allowance) + zombie + other
        healed = "" if stage.healed_at is None else f", {zombie} of them after the heal (a zombie's: none allowed)"
        return Counts(len(self.expected), lost, duplicated, None,
                      note=f"{self.events} events; {repeats} requests repeated (allowed in flight: "
                      f"{self.resend_allowance}){healed}; {other} other")

    async def close(self) -> None:
        if self.feeding is not None and not self.feeding.done():
            self.feeding.cancel()
        if self.smtp is not None:
            await asyncio.to_thread(self.smtp.stop)
        if getattr(self.fake, "_runner", None) is not None:
            await self.fake.stop()


@dataclass(frozen=True)
class ProviderOutage:
    """The providers answer 503 for `seconds`, then recover: notify retries with back-off."""

    seconds: float = 15

    async def inject(self, stage: Stage, load: Load) -> None:
        assert isinstance(load, NotifyLoad), "a provider outage needs notify's local providers"
        load.fake.outage(self.seconds)

    async def lift(self, stage: Stage, load: Load) -> None:
        await asyncio.sleep(self.seconds)  # the outage's length is the point
