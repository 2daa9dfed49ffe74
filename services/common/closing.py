"""Closing a client within a deadline, whatever the broker does.

An idempotent producer's `stop` waits for its unsent batches, and aiokafka never expires them while the broker
is gone (with idempotence on, `_can_retry` retries a batch for ever), so an unbounded `await producer.stop()`
keeps a SIGTERMed process alive for a whole outage; a consumer's `stop` can wait on its coordinator alike.
`close_within` gives each client `timeout_s`: the stop runs on to its end in the background (shielded, so a
cancelled caller does not cut it short half-way), and its outcome is retrieved, never left unobserved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka.errors import KafkaError

log = structlog.get_logger("runtime")
CLOSE_TIMEOUT_S = 10.0
"""How long a client's stop may take before the process goes on without it."""


async def close_within(service: str, client: str, stop: Callable[[], Awaitable[None]],
                       timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Run `stop()` for at most `timeout_s`; True if it finished cleanly. A stop that fails (the broker may be why we
    stop), takes too long or is cancelled is logged (`client.stop_failed`, the error's type) and left to finish; a
    caller cancelled meanwhile is cancelled, a stop that ended cancelled by itself is only a failed stop."""
    closing = asyncio.ensure_future(stop())
    try:
        await asyncio.wait_for(asyncio.shield(closing), timeout=timeout_s)
        return True
    except (TimeoutError, KafkaError, asyncio.CancelledError) as exc:
        log.warning("client.stop_failed", service=service, client=client, error=type(exc).__name__,
                    timeout_s=timeout_s)
        closing.add_done_callback(retrieved)
        # the stop itself ended cancelled (aiokafka cancels its own futures when the broker is gone): a failed stop.
        # Else the caller was cancelled. (Not `cancelling()`: it stays set in the `finally` of a cancelled task.)
        if isinstance(exc, asyncio.CancelledError) and not closing.cancelled():
            raise
        return False


def retrieved(future: asyncio.Future[Any]) -> None:
    """A done callback that reads a future's exception, so asyncio never reports it as never retrieved."""
    if not future.cancelled():
        future.exception()
