"""The deadline tracker: open dossiers in a changelog-backed faust table, a timer that fires alerts.

`python -m services.notify.deadline_worker` (started by `python -m services.notify`).
Input: the notify-internal `deadlines` topic (dossier states from the notify worker,
which read them read_committed from the canonical topic, and this tracker's own
alert decisions). A table may only be changed inside stream processing, so the
timer does not write: it sends an alert decision keyed by commune (same partition
as the dossier), and the agent marks the dossier "alerted" in the table and
forwards the alert, once. The flags live in the changelog, so a restart neither
forgets an open dossier nor alerts twice.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import faust
import structlog

from schemas.notification import DeadlineAlert, DeadlineMessage, TrackedDossier
from schemas.topics import NOTIFY_DEADLINES, Group, group_id
from services.common import clients
from services.common.admin import cluster_replication_factor
from services.common.logging import configure
from services.notify import deadlines
from services.notify.settings import NotifySettings
from services.notify.topics import Names

log = structlog.get_logger("notify.deadlines")
Tick = Callable[[], Awaitable[None]]


def every(app: faust.App, seconds: float) -> Callable[[Tick], Tick]:
    """`@app.timer(seconds)` with a type (faust declares the decorator as a bare `Callable`)."""

    def register(tick: Tick) -> Tick:
        timer: Callable[[Tick], object] = app.timer(seconds)
        timer(tick)
        return tick

    return register


def build(settings: NotifySettings, replication_factor: int = 1) -> faust.App:
    names = Names(settings.namespace)
    app_id = group_id(Group.NOTIFY_DEADLINES, settings.namespace)
    partitions = NOTIFY_DEADLINES.partitions  # the registry's count, which ensure_topics checked on the cluster
    datadir = Path(tempfile.gettempdir()) / "commune-bus-notify"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id, **clients.faust_options(settings), store="memory://",
        topic_partitions=partitions, web_port=settings.deadline_web_port, web_host="127.0.0.1", web_enabled=False,
        datadir=str(datadir / app_id), topic_replication_factor=replication_factor, producer_acks=-1,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(names.deadlines, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    alerts = app.topic(names.alerts, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    table = app.Table("open-dossiers", default=None, partitions=partitions, key_type=str, value_type=str)

    async def record_state(d: TrackedDossier) -> None:
        key = f"{d.commune}:{d.dossier_code}"
        if not d.is_open:
            table.pop(key, None)
            return
        old = table.get(key)
        table[key] = deadlines.merge(TrackedDossier.model_validate_json(old) if old else None, d).model_dump_json()

    async def record_alert(key: bytes, a: DeadlineAlert) -> None:
        old = table.get(f"{a.commune}:{a.dossier_code}")
        if old is None:
            return
        current = TrackedDossier.model_validate_json(old)
        marked = deadlines.mark(current, a)
        if marked != current:  # not yet alerted for this due date
            table[f"{a.commune}:{a.dossier_code}"] = marked.model_dump_json()
            await alerts.send(key=key, value=a.model_dump_json().encode())
            log.info("deadline.alert", kind=a.kind.value, commune=a.commune, alert=a.id)

    @app.agent(source)
    async def track(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            msg = DeadlineMessage.model_validate_json(value)
            if msg.dossier is not None:
                await record_state(msg.dossier)
            elif msg.alert is not None:
                await record_alert(key, msg.alert)

    @every(app, settings.deadline_tick_s)
    async def tick() -> None:
        now = datetime.now(UTC)
        for _, raw in list(table.items()):
            if raw is None:
                continue
            for alert in deadlines.alerts_due(TrackedDossier.model_validate_json(raw), now):
                decision = DeadlineMessage(alert=alert).model_dump_json().encode()
                await source.send(key=alert.commune.encode(), value=decision)

    return app


def main() -> None:
    settings = NotifySettings()
    configure(settings.log_level)
    # faust creates its own changelog topic: it gets the cluster's replication factor, as every registry topic does
    app = build(settings, asyncio.run(cluster_replication_factor(settings)))
    app.main()


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    main()
