"""When the backbone last received a change from a commune (`commune_last_received_timestamp_seconds`): the time
CommuneSilent judges, taken from the canonical records' timestamps, never from the events' own times."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from schemas.envelope import Event
from schemas.events import Family
from schemas.topics import CANONICAL
from services.common.settings import KafkaConnection
from services.metrics import ownership
from services.metrics.exposition import render
from services.metrics.ownership import Ownership
from services.metrics.partition import PartitionState
from services.metrics.topics import Names
from services.metrics.writers import StateRecord
from tests.metrics.events import Fetch, at, dossier, fetch

pytestmark = pytest.mark.unit
C = "02269"  # Tuyên Quang (08)
TP = TopicPartition(CANONICAL[Family.DOSSIER].name, 0)
CLOCK = at(24 * 40)  # the worker's clock: forty days after the first events


def owner_of_partition_0(tmp_path: Path) -> tuple[Ownership, PartitionState]:
    owner = Ownership(KafkaConnection(), Names(""), tmp_path, "test", new_writer=None)
    part = owner.partitions[0] = PartitionState(0, {})
    owner.owned = {0}  # as `assign` leaves it
    return owner, part


def published(first_offset: int, *events: tuple[Event, datetime]) -> Fetch:
    """`events` as fetched, each record stamped with when intake published it."""
    records = fetch(TP, first_offset, *(e for e, _ in events))[TP]
    return {TP: [replace(rec, timestamp=int(when.timestamp() * 1000)) for rec, (_, when) in zip(records, events,
                                                                                              strict=True)]}


def gauge(part: PartitionState, name: str) -> float:
    (line,) = [line for line in render([part], CLOCK.timestamp()).splitlines() if line.startswith(name + "{")]
    assert line.startswith(f'{name}{{province="08",commune="{C}"}} ')
    return float(line.rsplit(" ", 1)[1])


def test_a_backlog_of_old_events_counts_as_received_when_it_arrives(tmp_path: Path) -> None:
    """A commune's software sending a month-old backlog today is heard today: its last-received time is when intake
    published the records, while the newest event time stays a month old (CommuneSilent fired on it while the
    commune was sending)."""
    owner, part = owner_of_partition_0(tmp_path)
    today = at(24 * 35)
    owner.apply(published(0, (dossier(C, "D-1", 2, "e-1", 1), today),
                          (dossier(C, "D-2", 2, "e-2", 2), today + timedelta(seconds=5))), CLOCK.timestamp())
    assert gauge(part, "commune_last_event_timestamp_seconds") == at(2).timestamp()
    assert gauge(part, "commune_last_received_timestamp_seconds") == (today + timedelta(seconds=5)).timestamp()


def test_a_sender_whose_clock_is_hours_fast_is_received_though_its_times_are_not_believed(tmp_path: Path) -> None:
    """Vietnam time sent as UTC (7 h ahead): no event time is believed, so the last-event time never moves (the
    commune looked silent while it sent), but each change is received when it is published."""
    owner, part = owner_of_partition_0(tmp_path)
    fast = dossier(C, "D-1", 2, "e-1", 1)
    fast = fast.model_copy(update={"time": fast.time + timedelta(hours=7)})
    owner.apply(published(0, (fast, at(1))), CLOCK.timestamp())
    assert part.communes[C].last_event_us == 0
    assert gauge(part, "commune_last_received_timestamp_seconds") == at(1).timestamp()


def test_an_event_that_changes_nothing_does_not_move_the_received_time(tmp_path: Path) -> None:
    """A repeated event (or one older than the state it meets) changes no state and writes no changelog record, so
    it leaves the received time where a restore would find it."""
    owner, part = owner_of_partition_0(tmp_path)
    event = dossier(C, "D-1", 2, "e-1", 1)
    owner.apply(published(0, (event, at(1))), CLOCK.timestamp())
    changes, offsets = owner.apply(published(1, (event, at(30))), CLOCK.timestamp())
    assert changes == {0: {}} and offsets == {TP: 2}
    assert gauge(part, "commune_last_received_timestamp_seconds") == at(1).timestamp()


def test_a_record_without_a_timestamp_is_received_at_the_worker_clock(tmp_path: Path) -> None:
    """The worker's clock stands in for a record with no timestamp (-1 or 0), as it does for believing times."""
    owner, part = owner_of_partition_0(tmp_path)
    owner.apply(fetch(TP, 0, dossier(C, "D-1", 2, "e-1", 1)), CLOCK.timestamp())
    assert gauge(part, "commune_last_received_timestamp_seconds") == CLOCK.timestamp()


def test_changelog_records_carry_the_received_time_so_a_restore_gives_it_back(tmp_path: Path) -> None:
    """Each changed state goes to the changelog stamped with its commune's last-received time as it changed (here its
    event's receipt; the later of two changes in one batch); restoring those records gives the same last-received
    time, not the restore's time."""
    owner, part = owner_of_partition_0(tmp_path)
    first = owner.apply(published(0, (dossier(C, "D-1", 2, "e-1", 1), at(1)),
                                  (dossier(C, "D-2", 2, "e-2", 2), at(3))), CLOCK.timestamp())[0]
    # one batch changes D-1 twice; its records' timestamps out of order (two intake workers' clocks)
    second = owner.apply(published(2, (dossier(C, "D-1", 4, "e-3", 5), at(9)),
                                   (dossier(C, "D-1", 9, "e-4", 6), at(8))), CLOCK.timestamp())[0]
    d1 = f"d|{C}|D-1".encode()
    assert second[0][d1].timestamp_ms == int(at(9).timestamp() * 1000)
    assert first[0][d1] == StateRecord(first[0][d1].value, int(at(1).timestamp() * 1000))
    restored = PartitionState(0, {})
    for changes in (first, second):  # the changelog as the writer wrote it
        for key, (value, stamp) in changes[0].items():
            restored.restore(key, value, stamp)
    assert restored.communes[C].last_received_ms == part.communes[C].last_received_ms
    assert gauge(restored, "commune_last_received_timestamp_seconds") == at(9).timestamp()


def test_a_compacted_changelog_gives_the_received_time_back_when_a_later_change_was_stamped_earlier(
        tmp_path: Path) -> None:
    """Intake's clock going back (another intake worker took the partition, a clock set back) stamps a state's later
    change earlier than the change before it: compaction keeps only that later record, and the restore must still
    give the commune's last-received time back (found by `test_core_properties` with drawn record timestamps)."""
    owner, part = owner_of_partition_0(tmp_path)
    first = owner.apply(published(0, (dossier(C, "D-1", 2, "e-1", 1), at(9))), CLOCK.timestamp())[0]
    second = owner.apply(published(1, (dossier(C, "D-1", 4, "e-2", 2), at(8))), CLOCK.timestamp())[0]
    assert part.communes[C].last_received_ms == int(at(9).timestamp() * 1000)
    restored = PartitionState(0, {})
    for key, (value, stamp) in {**first[0], **second[0]}.items():  # the last record of each key: compacted
        restored.restore(key, value, stamp)
    assert restored.communes[C].last_received_ms == part.communes[C].last_received_ms


def test_a_record_stamped_by_an_intake_clock_set_ahead_is_received_at_the_worker_clock(tmp_path: Path) -> None:
    """An intake whose clock was set ahead (2025 typed 2052) stamps one record: that is no receipt time. The changelog
    carries the commune's last-received time on (`PartitionState.received_ms`), so taken as it is, the commune's
    later changes, correctly stamped, were all written with 2052 and no restore ever forgot it: CommuneSilent was
    blind to the commune until 2052 (review)."""
    owner, part = owner_of_partition_0(tmp_path)
    ahead = datetime(2052, 1, 1, tzinfo=CLOCK.tzinfo)
    changelog: dict[bytes, StateRecord] = {}
    for offset, (event, when) in enumerate([(dossier(C, "D-1", 2, "e-1", 1), ahead),
                                            (dossier(C, "D-1", 4, "e-2", 2), at(3)),
                                            (dossier(C, "D-2", 2, "e-3", 3), at(4))]):
        changelog.update(owner.apply(published(offset, (event, when)), CLOCK.timestamp())[0][0])  # compacted
    assert gauge(part, "commune_last_received_timestamp_seconds") == CLOCK.timestamp()
    restored = PartitionState(0, {})
    for key, (value, stamp) in changelog.items():
        restored.restore(key, value, stamp)
    assert restored.communes[C].last_received_ms == int(CLOCK.timestamp() * 1000)


class _Writer:
    async def start(self) -> None:
        return None


async def test_a_changelog_record_stamped_ahead_restores_at_the_worker_clock(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A changelog written before the stamps were bounded (each record its event's own stamp) may hold one an intake
    clock set ahead gave: restored as it is, every later change of the commune carried it on and no restore forgot
    it. The restore bounds it as `apply` does: the worker's clock stands in (review)."""
    owner = Ownership(KafkaConnection(), Names(""), tmp_path, "test", new_writer=lambda _: cast(Any, _Writer()))
    ahead_ms = int(datetime(2052, 1, 1, tzinfo=CLOCK.tzinfo).timestamp() * 1000)
    source, _ = owner_of_partition_0(tmp_path / "source")
    state = next(iter(source.apply(published(0, (dossier(C, "D-1", 2, "e-1", 1), at(1))), CLOCK.timestamp())[0][0]
                      .items()))
    key, (value, _) = state
    record = ConsumerRecord("commune.metrics.changelog", 0, 0, ahead_ms, 0, key, value, None, len(key), len(value), ())

    async def read_to_end(_conn: object, _topic: str, _partitions: list[int],
                          apply: Callable[[int, ConsumerRecord[bytes, bytes]], None], **_: object) -> int:
        apply(0, record)
        return 1

    monkeypatch.setattr(ownership, "read_to_end", read_to_end)
    before_ms = time.time() * 1000
    await owner._restore([0])
    assert before_ms <= owner.partitions[0].communes[C].last_received_ms <= time.time() * 1000
    owner.owned = {0}
    changes = owner.apply(published(1, (dossier(C, "D-1", 4, "e-2", 2), at(3))), CLOCK.timestamp())[0]
    assert changes[0][key].timestamp_ms < ahead_ms  # the commune's next change does not write 2052 on
