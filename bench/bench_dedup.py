"""Intake's de-duplication expiry, side by side in one run: the full scan it replaced against `SeenIds.expire`,
which stops at the first id within the window (no broker). `python -m bench bench_dedup`."""

from __future__ import annotations

import time
from datetime import timedelta

from services.intake.dedup import SeenIds

WINDOW = timedelta(days=7)
SIZES = (1_000_000, 3_000_000)
EXPIRED_SHARE = 0.01
"""A minute's expiry of a steady stream forgets a small share of a week's ids."""


def full_scan(first_seen: dict[str, int], cutoff: int) -> int:
    """The expiry as it was before (2026-12-03): every id compared."""
    old = [k for k, t in first_seen.items() if t < cutoff]
    for k in old:
        del first_seen[k]
    return len(old)


def filled(n: int) -> SeenIds:
    seen = SeenIds(WINDOW)
    for i in range(n):
        seen.add(f"/communes/02269/one-stop:{i:012d}", i)  # 1 ms apart, in time order as intake adds them
    return seen


def main() -> None:
    window_ms = int(WINDOW.total_seconds() * 1000)
    for n in SIZES:
        now = int(n * EXPIRED_SHARE) + window_ms
        before = filled(n)
        t0 = time.perf_counter()
        gone_before = full_scan(before._first_seen, now - window_ms)
        scan_ms = (time.perf_counter() - t0) * 1000
        after = filled(n)
        t0 = time.perf_counter()
        gone_after = after.expire(now)
        stop_ms = (time.perf_counter() - t0) * 1000
        assert gone_before == gone_after
        print(f"{n:>9,} ids, {gone_after:>6,} expired: full scan {scan_ms:7.1f} ms, stops at the window "
              f"{stop_ms:6.1f} ms ({scan_ms / stop_ms:.1f}x)", flush=True)


if __name__ == "__main__":
    main()
