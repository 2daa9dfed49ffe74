"""One ledger partition's state (done ids by age, deferred requests by due time) against a plain model, on both
stores: the in-memory one and RocksDB."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.ledger_state import KV, MemoryKV, PartitionState
from services.notify.ledger_store import RocksStores

pytestmark = pytest.mark.unit

IDS = st.sampled_from([f"n-{i}" for i in range(8)])
TIMES = st.integers(min_value=0, max_value=100)
OPS = st.lists(st.one_of(
    st.tuples(st.just("done"), IDS, TIMES, st.just(0)),
    st.tuples(st.just("defer"), IDS, TIMES, TIMES),
    st.tuples(st.just("urgent"), IDS, TIMES, TIMES),  # an emergency's deferral: the index of its own
    st.tuples(st.just("forget"), IDS, st.just(0), st.just(0)),
    st.tuples(st.just("prune"), st.just(""), TIMES, st.just(0)),
), max_size=40)


class Model:
    """What the state must answer, kept the obvious way: dicts and full scans."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}
        self.deferred: dict[str, tuple[int, bytes, bool]] = {}

    def apply(self, op: str, nid: str, t: int, due: int) -> None:
        if op == "done":
            self.deferred.pop(nid, None)
            self.done[nid] = max(t, self.done.get(nid, t))
        elif op in ("defer", "urgent") and nid not in self.done:
            self.deferred[nid] = (due, f"req-{nid}-{due}".encode(), op == "urgent")
        elif op == "forget":
            self.done.pop(nid, None)
            self.deferred.pop(nid, None)
        elif op == "prune":
            self.done = {n: w for n, w in self.done.items() if w >= t}


def run(state: PartitionState, ops: list[tuple[str, str, int, int]]) -> Model:
    model = Model()
    for op, nid, t, due in ops:
        model.apply(op, nid, t, due)
        if op == "done":
            state.mark_done(nid, t)
        elif op in ("defer", "urgent"):
            state.defer(nid, f"req-{nid}-{due}".encode(), due, t, urgent=op == "urgent")
        elif op == "forget":
            state.forget(nid)
        else:
            state.prune(t, limit=1_000)
    return model


def check(state: PartitionState, model: Model) -> None:
    assert set(state.done_ids()) == set(model.done) and state.done_count == len(model.done)
    assert set(state.deferred_ids()) == set(model.deferred) and state.deferred_count == len(model.deferred)
    for nid in {f"n-{i}" for i in range(8)}:
        expected = "done" if nid in model.done else "deferred" if nid in model.deferred else None
        assert state.state(nid) == expected
        assert state.request_json(nid) == (model.deferred[nid][1] if nid in model.deferred else None)
    for now in (0, 50, 100):
        expected = {urgent: [n for n, _ in sorted(((n, d) for n, (d, _, u) in model.deferred.items()
                                                   if d <= now and u == urgent), key=lambda x: (x[1], x[0]))]
                    for urgent in (True, False)}
        assert [nid for nid, _ in state.due(now, urgent=True)] == expected[True]
        assert [nid for nid, _ in state.due(now, urgent=False)] == expected[False]
        assert [nid for nid, _ in state.due(now)] == expected[True] + expected[False]  # emergencies first


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksStores]:
    stores = RocksStores(tmp_path)
    yield stores
    stores.close()


@given(OPS)
def test_state_matches_the_model_in_memory(ops: list[tuple[str, str, int, int]]) -> None:
    """Any sequence of done, defer and prune leaves exactly the model's done ids, deferrals and due order."""
    state = PartitionState(MemoryKV())
    check(state, run(state, ops))


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_state_matches_the_model_on_rocksdb(tmp_path_factory: pytest.TempPathFactory,
                                            ops: list[tuple[str, str, int, int]]) -> None:
    """The same on RocksDB: byte order of the keys is time order."""
    stores = RocksStores(tmp_path_factory.mktemp("rocks"))
    try:
        kv: KV = stores.open(0)
        state = PartitionState(kv)
        check(state, run(state, ops))
    finally:
        stores.close()


def test_due_reads_only_what_is_due(rocks: RocksStores) -> None:
    """Releases come in due-time order and stop at the first not yet due, whatever the write order."""
    state = PartitionState(rocks.open(1))
    for nid, due in (("late", 9_000), ("first", 1_000), ("second", 2_000), ("later", 5_000)):
        state.defer(nid, nid.encode(), due, 0)
    assert [nid for nid, _ in state.due(4_999)] == ["first", "second"]
    assert [raw for _, raw in state.due(10_000)] == [b"first", b"second", b"later", b"late"]


def test_prune_drops_old_done_ids_and_keeps_young_ones_and_deferrals(rocks: RocksStores) -> None:
    """Done ids written before the cutoff go; younger ones and every deferral (awaiting release) stay."""
    state = PartitionState(rocks.open(2))
    state.mark_done("old", 100)
    state.mark_done("young", 500)
    state.defer("waiting", b"{}", 10_000, 50)
    state.mark_done("renewed", 100)
    state.mark_done("renewed", 600)  # written again later: ages from then
    assert state.prune(cutoff_ms=400, limit=10) == 1
    assert (state.state("old"), state.state("young"), state.state("renewed")) == (None, "done", "done")
    assert state.state("waiting") == "deferred" and state.done_count == 2


def test_prune_stops_at_its_limit(rocks: RocksStores) -> None:
    """A prune step forgets at most `limit` ids, the oldest first, so the loop can yield between steps."""
    state = PartitionState(rocks.open(3))
    for i in range(5):
        state.mark_done(f"n-{i}", i)
    assert state.prune(cutoff_ms=100, limit=2) == 2
    assert sorted(state.done_ids()) == ["n-2", "n-3", "n-4"]


def test_a_discarded_partition_store_is_gone(tmp_path: Path) -> None:
    """Letting a partition go deletes its store's files; taking it on again starts empty."""
    stores = RocksStores(tmp_path)
    state = PartitionState(stores.open(4))
    state.mark_done("n-1", 1)
    stores.discard(4)
    assert not (stores.root / "p4").exists()
    assert PartitionState(stores.open(4)).state("n-1") is None
    stores.close()
    assert not stores.root.exists()


def test_stores_left_by_a_killed_process_are_removed(tmp_path: Path) -> None:
    """A folder whose process is gone (no `close` ran) is deleted when a run opens its stores; a live one stays.

    These are folders as versions before the lock files left them (`tests/notify/test_store_orphans.py` has the
    locked ones): judged by their pid once a minute old."""
    dead = tmp_path / f"notify-ledger-{2**22 + 12345}-abc"
    live = tmp_path / f"notify-ledger-{os.getpid()}-def"
    for folder in (dead, live):
        (folder / "p0").mkdir(parents=True)
        os.utime(folder, (time.time() - 120, time.time() - 120))
    stores = RocksStores(tmp_path)
    assert not dead.exists() and live.exists() and stores.root.exists()
    stores.close()
