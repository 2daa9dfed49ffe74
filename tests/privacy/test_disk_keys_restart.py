"""A kept keyring (ADR 0034) that makes keys too (pending, pinned), fed the key topic and restarted at its
checkpoints, against a keyring that reads the whole topic once (from the review: a pinned subject's confirmed keys
were in memory only, and the offsets went past their records)."""
from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, record_key
from services.privacy.key_records import encoded
from tests.privacy.keys import NOW
from tests.privacy.test_disk_keys import kept_ring, ring

pytestmark = pytest.mark.unit
SUBJECTS = ["a", "b", "c"]
OPS = st.lists(st.one_of(
    st.tuples(st.just("make"), st.sampled_from(SUBJECTS), st.booleans()),    # kept keyring makes a key (expiring?)
    st.tuples(st.just("commit"), st.integers(0, 30), st.booleans()),         # one of its pending records committed
    st.tuples(st.just("foreign"), st.sampled_from(SUBJECTS), st.booleans()),  # another worker's key, committed
    st.tuples(st.just("tombstone"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("mark"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(st.just("deliver"), st.integers(0, 5), st.booleans()),         # the store reads n more, checkpoints
    st.tuples(st.just("restart"), st.just(0), st.booleans()),
), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_a_kept_keyring_restarted_at_its_checkpoints_holds_what_a_full_read_does(
        ops: list[tuple[str, object, bool]]) -> None:
    """Keys made here (confirmed or not), another worker's, tombstones, marks, deliveries and restarts in any order:
    every subject's confirmed keys and the count as a full read of the topic has them."""
    folder = Path(tempfile.mkdtemp())
    clock = [NOW]
    other = ring(clock=clock)
    kept = kept_ring(folder, clock=clock)
    log: list[tuple[bytes, bytes | None]] = []  # the key topic: (record key, value)
    pending: list[KeyRecord] = []  # records made by `kept`, not committed
    try:
        for op, arg, flag in ops:
            clock[0] += timedelta(seconds=1)
            if op == "make":
                _, _, recs = kept.key_for(str(arg), clock[0] + timedelta(days=1) if flag else None)
                pending.extend(recs)
            elif op == "commit" and pending:
                r = pending[int(str(arg)) % len(pending)]
                log.append((r.record_key, encoded(r)))
            elif op == "foreign":
                _, _, recs = other.key_for(str(arg))
                log.extend((r.record_key, encoded(r)) for r in recs)
            elif op == "tombstone" and log:
                key = log[int(str(arg)) % len(log)][0]
                if not key.endswith(ERASED_MARK.encode()):
                    log.append((key, None))
            elif op == "mark":
                m = ErasureMark(subject=str(arg), created_up_to=clock[0])
                log.append((record_key(str(arg), ERASED_MARK), m.model_dump_json().encode()))
            elif op == "deliver" or op == "restart":
                at = kept.offsets().get(("keys", 0), 0)
                upto = min(len(log), at + int(str(arg))) if op == "deliver" else at
                for key, value in log[at:upto]:
                    kept.apply(key, value)
                kept.checkpoint({("keys", 0): upto})
                if op == "restart":
                    kept.close()
                    kept = kept_ring(folder, clock=clock)
                    pending.clear()
        at = kept.offsets().get(("keys", 0), 0)
        for key, value in log[at:]:
            kept.apply(key, value)
        full = ring(clock=clock)
        for key, value in log:
            full.apply(key, value)
        for s in SUBJECTS:
            confirmed = sorted(k.key_id for k in kept._keys.get(s) or () if k.record is None)
            assert confirmed == full.key_ids(s), (s, ops)
        assert len(kept) == sum(len(kept.key_ids(s)) for s in SUBJECTS)
    finally:
        kept.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_key_of_another_worker_confirmed_while_the_subject_is_pinned_is_kept(tmp_path: Path) -> None:
    """The review's shrunk case: a key made here, pending; another worker's key of the same subject confirmed; the
    offsets go past its record; a restart still holds it."""
    kept, other = kept_ring(tmp_path), ring()
    kept.key_for("a")
    _, _, theirs = other.key_for("a")
    kept.apply(theirs[0].record_key, encoded(theirs[0]))
    kept.checkpoint({("keys", 0): 1})
    kept.close()
    again = kept_ring(tmp_path)
    try:
        assert again.key_ids("a") == [theirs[0].key_id] and len(again) == 1
    finally:
        again.close()
