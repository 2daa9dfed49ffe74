"""A send refused for a reason no restart mends (the principal may not write the topic) reaches the runtime as it is,
which ends the process, instead of wrapped in `SendFailed` and restarted for ever (the review's finding)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from services.common.permanent import PERMANENT
from services.common.transactions import SendFailed, all_sent

pytestmark = pytest.mark.unit


def _failed(exc: BaseException) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def test_a_refused_write_right_is_raised_as_it_is_and_a_timeout_is_wrapped() -> None:
    """TopicAuthorizationFailed among the sends: raised itself (a PERMANENT error); a timeout: SendFailed, naming it."""
    ok: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    ok.set_result(None)
    with pytest.raises(TopicAuthorizationFailedError) as refused:
        await all_sent([ok, _failed(KafkaTimeoutError()), _failed(TopicAuthorizationFailedError())])  # type: ignore[list-item]
    assert isinstance(refused.value, PERMANENT)
    with pytest.raises(SendFailed, match="KafkaTimeoutError"):
        await all_sent([ok, _failed(KafkaTimeoutError())])  # type: ignore[list-item]
