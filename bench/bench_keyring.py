"""The keyring's size and restore time per key (no broker): what every process holding one (intake, notify,
`commune-bus dlq`) pays for each applicant key on the key topic. `python -m bench bench_keyring`.

Every key record is applied as the key store applies it at start (`Keyring.apply`: parse, check, unwrap) into a
fresh keyring; its memory is measured with tracemalloc and set beside a floor measured in the same run: the same
records' bytes alone in a dict (what holding the key topic itself in memory would cost). The projection uses
DOMAIN.md's ~90,000 dossiers a day, each taken as a new applicant (the upper bound: one key per subject).
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from services.privacy.keyring import Keyring, encoded

KEYS = 200_000
ROUNDS = 3
DOSSIERS_A_DAY = 90_000
T = TypeVar("T")


def records(keyring: Keyring, n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        _, _, made = keyring.key_for(keyring.subject("cccd", f"{i:012d}"))
        out.append((made[0].record_key, encoded(made[0])))
    return out


def restored(keks: dict[str, bytes], pepper: bytes, recs: list[tuple[bytes, bytes]]) -> Keyring:
    keyring = Keyring(keks, "k1", pepper)
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


if __name__ == "__main__":
    main()
