"""The keyring on disk as a writer (ADR 0034): pending keys pinned in memory, then confirmed to disk, compared with a
keyring in memory making the very same keys (from the review: the reader-only property test never made a key)."""
from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.personal import ERASED_MARK, ErasureMark, record_key
from services.privacy import crypto
from services.privacy.crypto import Erased
from services.privacy.disk import DiskKeys
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from tests.privacy.keys import KEK, NOW, PEPPER

pytestmark = pytest.mark.unit
SUBJECTS = [f"sub-{i}" for i in range(5)]
OPS = st.lists(st.one_of(
    st.tuples(st.just("use"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(st.just("confirm"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("tombstone"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("mark"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(st.just("time"), st.integers(0, 3), st.booleans()),
), max_size=50)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, cached=st.integers(1, 3))
def test_a_writer_on_disk_answers_as_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              ops: list[tuple[str, object, bool]], cached: int) -> None:
    """Keys made (some expiring), used again, confirmed (copies too), tombstoned, erased by mark, expired, in any
    order, with 1-3 subjects in memory: the same key ids, records handed out, counts and answers as in memory."""
    ids, deks = itertools.count(), itertools.count()
    pending_id: list[str] = []
    pending_dek: list[bytes] = []

    def new_key_id() -> str:  # each value handed out twice: once to each keyring
        if not pending_id:
            pending_id.extend([f"k{next(ids):06d}"] * 2)
        return pending_id.pop()

    def new_key() -> bytes:
        if not pending_dek:
            pending_dek.extend([next(deks).to_bytes(32, "big")] * 2)
        return pending_dek.pop()

    monkeypatch.setattr(crypto, "new_key_id", new_key_id)
    monkeypatch.setattr(crypto, "new_key", new_key)
    clock = [NOW]
    disk = DiskKeys(tmp_path, cached=cached)
    mem = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: clock[0])
    dsk = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: clock[0], table=disk)
    made: list = []
    try:
        for op, arg, flag in ops:
            if op == "use":
                exp = clock[0] + timedelta(days=1) if flag else None
                a, b = mem.key_for(str(arg), exp), dsk.key_for(str(arg), exp)
                assert (a[0], [r.record_key for r in a[2]]) == (b[0], [r.record_key for r in b[2]])
                assert crypto.open_sealed(b[1], crypto.seal(a[1], b"x", b"a"), b"a") == b"x"
                made.extend(zip(a[2], b[2], strict=True))
            elif op in ("confirm", "tombstone") and made:
                ra, rb = made[int(str(arg)) % len(made)]
                for _ in range(2 if flag else 1):
                    mem.apply(ra.record_key, encoded(ra) if op == "confirm" else None)
                    dsk.apply(rb.record_key, encoded(rb) if op == "confirm" else None)
            elif op == "mark":
                mark = ErasureMark(subject=str(arg), created_up_to=clock[0]).model_dump_json().encode()
                for k in (mem, dsk):
                    k.apply(record_key(str(arg), ERASED_MARK), mark)
            elif op == "time":
                clock[0] += timedelta(days=int(str(arg)), seconds=1)
                assert mem.expire() == dsk.expire()
            assert len(mem) == len(dsk)
            for s in SUBJECTS:
                assert mem.key_ids(s) == dsk.key_ids(s)
        for ra, _ in made:
            ans = []
            for k in (mem, dsk):
                try:
                    k.dek(ra.subject, ra.key_id)
                    ans.append("ok")
                except Erased as exc:
                    ans.append(type(exc).__name__)
            assert ans[0] == ans[1]
    finally:
        disk.close()
