"""The project's only work-around inside aiokafka, pinned to the version it was written for.

aiokafka retries the first AddPartitionsToTxn of a transaction that meets
CONCURRENT_TRANSACTIONS (the previous transaction's markers still being written,
KAFKA-5477) after a fixed 20 ms (`aiokafka.producer.sender.BACKOFF_OVERRIDE`).
The Java client waits min(20 ms, retry.backoff.ms); `apply` makes aiokafka do the
same, which on loopback keeps intake's raw -> canonical latency near the
exactly-once floor. `tests/common/test_aiokafka_compat.py` fails when the pinned
version changes, so whoever upgrades aiokafka re-checks this module.
"""

from __future__ import annotations

import aiokafka
from aiokafka.producer import sender

PINNED_VERSION = "0.14.0"


def apply(retry_backoff_ms: int) -> None:
    """Retry CONCURRENT_TRANSACTIONS after min(20 ms, `retry_backoff_ms`), as the Java client does."""
    if aiokafka.__version__ != PINNED_VERSION:
        raise RuntimeError(f"aiokafka {aiokafka.__version__} is not the {PINNED_VERSION} this work-around was "
                           "written for: check services/common/aiokafka_compat.py against it")
    sender.BACKOFF_OVERRIDE = min(sender.BACKOFF_OVERRIDE, retry_backoff_ms / 1000)
