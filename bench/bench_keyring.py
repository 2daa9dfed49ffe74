"""The keyring's size and restore time per key (no broker): what every process holding one (intake, notify,
`commune-bus dlq`) pays for each applicant key on the key topic. `python -m bench bench_keyring`.

Every key record is applied as the key store applies it at start (`Keyring.apply`: parse, check, unwrap) into a
fresh keyring; its memory is measured with tracemalloc and set beside a floor measured in the same run: the same
records' bytes alone in a dict (what holding the key topic itself in memory would cost). The projection uses
DOMAIN.md's ~90,000 dossiers a day, each taken as a new applicant (the upper bound: one key per subject).

Then the services' keyring (ADR 0034: keys on disk, `CACHED` subjects in memory; in a folder of the run, and kept as
with `PRIVACY_STATE_DIR`) beside the keyring in memory, each in a child process of its own reading the same records,
interleaved, `ROUNDS` times: the resident memory the restore added (RocksDB's memory is not Python's: tracemalloc
would not see it), the restore per key, a use of a key already held (`dek` of a random subject: from disk, for most of
them), intake's path for a new applicant (`key_for` of an unknown subject, then its record read back), and for the
kept store a start from it once closed.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import Kept
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring

KEYS = 200_000
ROUNDS = 3
DOSSIERS_A_DAY = 90_000
CACHED = 20_000
"""Subjects in memory for the keys-on-disk variant here (a tenth of the keys: most uses go to disk)."""
USES = 50_000
T = TypeVar("T")


def records(keyring: Keyring, n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        _, _, made = keyring.key_for(keyring.subject("cccd", f"{i:012d}"))
        out.append((made[0].record_key, encoded(made[0])))
    return out


def restored(keks: dict[str, bytes], pepper: bytes, recs: list[tuple[bytes, bytes]],
             table: DiskKeys | None = None) -> Keyring:
    keyring = Keyring(keks, "k1", pepper, table=table)
    for key, value in recs:
        keyring.apply(key, value)
    return keyring


def measured_bytes(build: Callable[[], T]) -> tuple[T, int]:
    gc.collect()
    tracemalloc.start()
    try:
        held = build()
        gc.collect()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, size


def main() -> None:
    keks, pepper = {"k1": os.urandom(32)}, os.urandom(32)
    recs = records(Keyring(keks, "k1", pepper), KEYS)
    keyring, ring_bytes = measured_bytes(lambda: restored(keks, pepper, recs))
    assert len(keyring) == KEYS
    del keyring
    raw, raw_bytes = measured_bytes(lambda: {bytes(bytearray(k)): bytes(bytearray(v)) for k, v in recs})  # copies
    del raw
    best = float("inf")
    for _ in range(ROUNDS):  # timed without tracemalloc, best of the rounds (a shared machine)
        t0 = time.perf_counter()
        restored(keks, pepper, recs)
        best = min(best, time.perf_counter() - t0)
    per_key, per_raw, us = ring_bytes / KEYS, raw_bytes / KEYS, best / KEYS * 1e6
    print(f"{KEYS:,} keys: keyring {per_key:.0f} B a key, the records' bytes alone in a dict {per_raw:.0f} B "
          f"({per_key / per_raw:.2f}x); restore {us:.1f} us a key (best of {ROUNDS})", flush=True)
    for years in (1, 3):
        n = DOSSIERS_A_DAY * 365 * years
        print(f"  after {years} year(s) of new applicants (~{n / 1e6:.0f} M keys): {per_key * n / 1e9:.1f} GB in every "
              f"process holding a keyring, restore {us * n / 1e6 / 60:.1f} min at start", flush=True)


    tables(keks, pepper, recs)


def tables(keks: dict[str, bytes], pepper: bytes, recs: list[tuple[bytes, bytes]]) -> None:
    """Keys in memory beside keys on disk, each variant a child process reading the same records, interleaved."""
    got: dict[str, list[dict[str, float]]] = {"memory": [], "disk": [], "kept": []}
    with tempfile.TemporaryDirectory() as folder:
        given = Path(folder) / "records.pickle"
        given.write_bytes(pickle.dumps((keks, pepper, recs)))
        for _ in range(ROUNDS):
            for variant in got:
                out = subprocess.run([sys.executable, "-m", "bench.bench_keyring", variant, str(given)], check=True,
                                     capture_output=True, text=True).stdout
                got[variant].append(json.loads(out.strip().splitlines()[-1]))  # after the store's log lines
    print(f"\nkeys in memory vs keys on disk ({CACHED:,} subjects in memory), {KEYS:,} keys, each variant a child "
          f"process, best of {ROUNDS} interleaved:", flush=True)
    print("| keyring | resident memory after the restore (a key) | restore a key | use of a held key | "
          "a new applicant's key |")
    print("|---|---|---|---|---|")
    best = {}
    for variant in got:
        runs = got[variant]
        best[variant] = b = {k: min(r[k] for r in runs) for k in runs[0]}
        print(f"| {variant} | {b['held_kb'] / 1024:.0f} MB ({b['held_kb'] * 1024 / KEYS:.0f} B) | "
              f"{b['restore_us']:.1f} us | {b['use_us']:.2f} us | {b['new_us']:.1f} us |", flush=True)
    m = best["memory"]
    for variant in ("disk", "kept"):
        d = best[variant]
        print(f"{variant} : memory = resident {d['held_kb'] / m['held_kb']:.2f}x, restore "
              f"{d['restore_us'] / m['restore_us']:.2f}x, use {d['use_us'] / m['use_us']:.2f}x, new applicant "
              f"{d['new_us'] / m['new_us']:.2f}x", flush=True)
    reopen = best["kept"]["reopen_ms"]
    print(f"a start from a kept store (PRIVACY_STATE_DIR) of {KEYS:,} keys: {reopen:.1f} ms, against "
          f"{m['restore_us'] * KEYS / 1e3:.0f} ms to read them into memory (the topics' records written since are "
          f"read on top)", flush=True)


def child(variant: str, given: Path) -> None:
    """One variant, measured in this process; prints its figures as JSON."""
    keks, pepper, recs = pickle.loads(given.read_bytes())  # the parent's own file
    gc.collect()
    before = resident_kb()
    figures = {"restore_us": 0.0, "use_us": 0.0, "new_us": 0.0, "held_kb": 0.0, "reopen_ms": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        kept = Kept.of("bench", keks, "k1")  # "kept": as with PRIVACY_STATE_DIR (its write-ahead log included)
        table = None if variant == "memory" else DiskKeys(Path(folder), CACHED,
                                                          kept=kept if variant == "kept" else None)
        t0 = time.perf_counter()
        keyring = restored(keks, pepper, recs, table)
        figures["restore_us"] = (time.perf_counter() - t0) / KEYS * 1e6
        gc.collect()
        figures["held_kb"] = resident_kb() - before  # the restored keyring, RocksDB's memtables and caches too
        subjects = [keyring.subject("cccd", f"{random.randrange(KEYS):012d}") for _ in range(USES)]
        t0 = time.perf_counter()
        for subject in subjects:
            keyring.dek(subject, keyring.key_for(subject)[0])
        figures["use_us"] = (time.perf_counter() - t0) / USES * 1e6
        new = [keyring.subject("cccd", f"9{i:011d}") for i in range(USES)]
        t0 = time.perf_counter()
        for subject in new:
            _, _, made = keyring.key_for(subject)
            keyring.apply(made[0].record_key, encoded(made[0]))
        figures["new_us"] = (time.perf_counter() - t0) / USES * 1e6
        keyring.close()
        if variant == "kept":  # closed above; a start from it now
            t0 = time.perf_counter()
            again = Keyring(keks, "k1", pepper, table=DiskKeys(Path(folder), CACHED, kept=kept))
            figures["reopen_ms"] = (time.perf_counter() - t0) * 1e3
            assert len(again) == KEYS + USES  # the restored keys and the new applicants', all kept
            again.close()
    print(json.dumps(figures))


def resident_kb() -> float:
    """This process's resident memory now (Linux: /proc/self/statm, in pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child(sys.argv[1], Path(sys.argv[2]))
    else:
        main()
