"""notify on the real broker against hostile local providers: huge or dirty message ids, 50 MB replies.

Each provider accepts every message (a 2xx) but answers something no provider should: an 11 MB message id, an
id holding a phone number, CR/LF and a terminal escape, a 50 MB body to an SMS and to a webhook. The run must go
on, every message count as sent, its status be written and small, nothing the provider echoed be stored or
logged, and notify's memory not follow the replies' size.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from schemas.notification import ChannelKind
from services.notify import rules
from services.notify.fake_providers import FakeProviders
from services.notify.statuses import MAX_BYTES as MAX_STATUS_BYTES
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.kafkatools import free_port, read_all
from tests.notify.conftest import StartNotify, caught_up, publish, statuses
from tests.notify.events import PHONE, directory, dossier
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

ELEVEN_MB, FIFTY_MB = 11 * 1024 * 1024, 50 * 1024 * 1024
DIRTY_ID = f"phone={PHONE}\r\nX-Injected: 1 \u001b[31mRED"
CHUNK = b" " * 65536


class Hostile(FakeProviders):
    """Fake providers that take every message and answer by the dossier code it names: D-HUGE-ID an 11 MB
    message id, D-DIRTY-ID `DIRTY_ID`, D-HUGE-BODY 50 MB (its SMS and its webhook); any other a plain receipt."""

    streamed: int = 0
    """Bytes of 50 MB replies written before notify closed the connection, summed."""

    async def sms(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text, key = body.get("text", ""), request.headers.get("Idempotency-Key", "")
        if "D-HUGE-ID" in text:
            return await self._accept(request, body, {"message_id": "x" * ELEVEN_MB})
        if "D-DIRTY-ID" in text:
            return await self._accept(request, body, {"message_id": DIRTY_ID})
        if "D-HUGE-BODY" in text:
            await self._accept(request, body, {})
            return await self._fifty_mb(request)
        return await self._accept(request, body, {"message_id": "sms-" + key[:12]})

    async def hook(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if b"D-HUGE-BODY" not in raw:
            return await super().hook(request)
        await self._accept(request, {"event": raw.decode()}, {})
        return await self._fifty_mb(request)

    async def _fifty_mb(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            for _ in range(FIFTY_MB // len(CHUNK)):
                await resp.write(CHUNK)
                self.streamed += len(CHUNK)
            await resp.write(b"{}")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # notify closed the connection
            pass
        return resp


def sms_id(code: str, event_id: str) -> str:
    [r] = [r for r in rules.for_event(dossier(event_id, code=code), directory(), Registry())
           if r.channel is ChannelKind.SMS]
    return r.notification_id


def peak_kb(pid: int) -> int:
    """VmHWM of `pid`: the most resident memory it has had, in kB."""
    [line] = [x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:")]
    return int(line.split()[1])


async def test_hostile_provider_replies_neither_end_the_run_nor_reach_the_status_topic(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        tmp_path: Path) -> None:
    """An 11 MB id, a dirty id and 50 MB replies: the run goes on (no task failed, no restart), each message is
    `sent` with a small status holding no id and a reason code, the messages after them are delivered, nothing the
    provider echoed is in a status or a log line, and notify's peak memory grows by far less than one reply.
    Before, the 11 MB id's status was refused for its size and ended the run (its `sent` status lost), the dirty
    id was published as it came, and each 50 MB reply was read whole."""
    hostile = Hostile(webhook_secrets={"prov-08": "s3cret"})
    await hostile.start()
    (tmp_path / "subscribers.toml").write_text(
        f'[[subscribers]]\nname = "prov-08"\nurl = "{hostile.url}/hooks/prov-08"\nsecret = "s3cret"\n'
        'event_types = ["vn.communebus.dossier.status-changed.v1"]\nprovinces = ["08"]\n', encoding="utf-8")
    port = free_port()
    try:
        proc = start_notify(NOTIFY_SMS_URL=hostile.url, NOTIFY_HTTP_PORT=str(port))
        first = sms_id("D-FIRST", "h-first")
        await publish(kafka_bootstrap, namespace, dossier("h-first", code="D-FIRST"))
        await eventually_async(lambda: first in hostile.accepted, timeout=60, interval=0.2, what="a first SMS")
        baseline = peak_kb(proc.pid)

        codes = {"D-HUGE-ID": "h-1", "D-DIRTY-ID": "h-2", "D-HUGE-BODY": "h-3",
                 "D-AFTER-0": "h-4", "D-AFTER-1": "h-5"}
        await publish(kafka_bootstrap, namespace, *(dossier(e, code=c) for c, e in codes.items()))
        ids = {code: sms_id(code, e) for code, e in codes.items()}

        def all_accepted() -> bool:
            missing = [c for c, i in ids.items() if i not in hostile.accepted]
            assert not missing, missing
            return True

        await eventually_async(all_accepted, timeout=60, interval=0.2, what="every SMS accepted")
        await caught_up(kafka_bootstrap, namespace)
        grown_mb = (peak_kb(proc.pid) - baseline) / 1024
        assert proc.poll() is None, "notify keeps running"
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            metrics = await resp.text()
    finally:
        await hostile.stop()

    log = (tmp_path / "notify.log").read_text(encoding="utf-8", errors="replace")
    assert "task.failed" not in log and "service.restarting" not in log
    records = await read_all(kafka_bootstrap, notify_topics.status, idle=2)
    assert max(len(r.value) for r in records) <= MAX_STATUS_BYTES
    for r in records:
        assert PHONE.encode() not in r.value and b"X-Injected" not in r.value and b"\\u001b" not in r.value
    assert PHONE not in log and "X-Injected" not in log and "xxxxxxxx" not in log

    sent = {s["notification_id"]: s for s in statuses(records) if s["outcome"] == "sent"}
    assert {code: sent[i].get("reason") for code, i in ids.items()} == {
        "D-HUGE-ID": "reply_too_large", "D-DIRTY-ID": "provider_id_refused", "D-HUGE-BODY": "reply_too_large",
        "D-AFTER-0": None, "D-AFTER-1": None}
    assert not [c for c in ("D-HUGE-ID", "D-DIRTY-ID", "D-HUGE-BODY") if "provider_message_id" in sent[ids[c]]]
    assert sent[ids["D-AFTER-0"]]["provider_message_id"] == "sms-" + ids["D-AFTER-0"][:12]
    hooks = [i for i, s in sent.items() if s["channel"] == "webhook"]
    assert len(hooks) == len(codes) + 1  # the subscriber's 50 MB reply did not fail its webhook

    refused = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'notify_provider_replies_refused_total\{channel="sms",reason="(\w+)"\} (\S+)', metrics)}
    assert refused["provider_id_refused"] >= 1 and refused["reply_too_large"] >= 2, refused
    assert hostile.streamed < 2 * FIFTY_MB  # neither 50 MB reply was read to its end
    assert grown_mb < 32, f"notify's peak resident memory grew by {grown_mb:.0f} MB"
