"""End to end on the real broker: a raw portal dossier -> intake -> notify -> the local SMS gateway."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, PARTITIONS, RAW, Group, group_id, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from tests.cluster.tools import scrape
from tests.kafkatools import free_port, produce, start_service, stop_service
from tests.notify.conftest import StartNotify, caught_up, group_caught_up
from tests.samples import COMMUNE, dumps, portal_dossier, recent
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


async def test_raw_dossier_reaches_the_citizen_once_in_vietnamese_and_in_khmer(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        tmp_path: Path) -> None:
    """Two portal-shape dossiers (vi and km preference) through intake and notify: exactly one right SMS each."""
    specs = (*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP)
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(s, namespace) for s in specs])
    intake_port = free_port()
    intake = start_service("services.intake", {"KAFKA_BOOTSTRAP": kafka_bootstrap, "INTAKE_NAMESPACE": namespace,
                                               "INTAKE_HTTP_PORT": str(intake_port)}, tmp_path / "intake.log")
    try:
        start_notify(NOTIFY_SUBSCRIBERS_FILE="")
        vi = recent(portal_dossier("TL-251101-0101", status=2, SoDienThoaiChuHoSo="0912000001"))
        km = recent(portal_dossier("TL-251101-0102", status=2, SoDienThoaiChuHoSo="0912000002", NgonNguUuTien="km"))
        raw = scoped(RAW[Family.DOSSIER], namespace).name
        header = [("commune-code", COMMUNE.encode())]
        await produce(kafka_bootstrap, raw, [(COMMUNE.encode(), dumps(d), header) for d in (vi, km)])

        def two_sent() -> bool:
            assert len(fake.accepted) >= 2, (tmp_path / "intake.log").read_text()[-2000:]
            return True

        await eventually_async(two_sent, timeout=90, interval=0.2, what="two SMS at the provider")
        # Anything extra (a duplicate canonical event, a second send) would come from input not yet done with:
        # once intake has committed the raw records and notify every canonical one, the count is final.
        await group_caught_up(kafka_bootstrap, group_id(Group.INTAKE, namespace), [raw])
        await caught_up(kafka_bootstrap, namespace)
        by_phone = {r.body["to"]: r.body for r in fake.accepted.values() if r.path == "/sms"}
        assert by_phone.keys() == {"0912000001", "0912000002"} and len(fake.accepted) == 2
        due = f"{datetime.strptime(vi['NgayHenTra'], '%Y%m%d%H%M%S'):%d/%m/%Y}"  # 17:00 in Vietnam, that day
        assert by_phone["0912000001"]["text"] == (
            f"Hồ sơ TL-251101-0101 (Đăng ký khai sinh) đã được tiếp nhận. Ngày hẹn trả kết quả: {due}.")
        assert by_phone["0912000002"]["text"] == (
            f"ឯកសារ TL-251101-0102 (Đăng ký khai sinh) ត្រូវបានទទួលហើយ។ ថ្ងៃណាត់ទទួលលទ្ធផល៖ {due}។")
        assert by_phone["0912000002"]["encoding"] == "UCS-2"
        assert sum(fake.replays.values()) == 0

        def raw_lag_caught_up() -> bool:  # intake exports its consumer's lag, every raw partition, 0 once caught up
            lags = [float(line.rsplit(" ", 1)[1]) for line in scrape(intake_port).splitlines()
                    if line.startswith("commune_consumer_lag{") and 'service="intake"' in line
                    and f'topic="{raw}"' in line]
            assert len(lags) == PARTITIONS and set(lags) == {0.0}, lags
            return True
        await eventually_async(raw_lag_caught_up, timeout=30, what="intake's lag series, all 0")
    finally:
        stop_service(intake)
