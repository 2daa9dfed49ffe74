"""A snapshot round the broker refuses a right for (the metrics principal's WRITE on commune.metrics.snapshots taken
away) ends the process as every other refused right does (`services.common.permanent`, runbook ServiceDown); a
transient Kafka error skips the round, counted, and the next interval tries again.

Found on the secure broker (acl probe, 2026-12-06): with the ACL removed mid-run, metrics logged
`metrics.snapshot_failed` (TopicAuthorizationFailedError) once a minute and went on, `/readyz` and `/healthz` 200, its
snapshots gone for good and no alert on `commune_metrics_snapshot_failures_total`."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from services.metrics.publishing import snapshot_loop

pytestmark = pytest.mark.unit


async def rounds(error: Exception, wanted: int = 3) -> int:
    """`snapshot_loop` over a publish that fails with `error` every time, until it has been asked `wanted` times (then
    stopped) or the loop raised; how many times it was asked."""
    stop, asked = asyncio.Event(), 0

    async def publish() -> int:
        nonlocal asked
        asked += 1
        if asked >= wanted:
            stop.set()
        raise error

    await asyncio.wait_for(snapshot_loop(stop, 0.001, publish), timeout=10)
    return asked


async def test_a_refused_right_ends_the_loop_at_the_first_round() -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await rounds(TopicAuthorizationFailedError())


async def test_a_transient_error_skips_the_round_and_the_next_one_is_tried() -> None:
    assert await rounds(KafkaTimeoutError()) == 3
