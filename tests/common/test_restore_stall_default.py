"""Every read to a topic's end gives up once it read nothing for `changelog.RESTORE_STALL_S`, unless its caller says
otherwise (audit of the CLI's hangs: the readers without a limit, `commune-bus dlq list` and `trace`, erasure's and
rewrap's key reads, notify's deadline store, waited for as long as a broker frozen mid-read stayed frozen)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.cli import dlq
from services.common import changelog
from services.common.settings import KafkaConnection

pytestmark = pytest.mark.unit


@pytest.fixture
async def frozen() -> AsyncIterator[str]:
    """A TCP server that accepts and then says nothing, ever: a frozen broker, as its clients see it."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in held:
        writer.close()


def test_a_read_to_the_end_has_a_stall_limit_unless_its_caller_says() -> None:
    assert changelog.read_to_end.__kwdefaults__["stall_s"] == changelog.RESTORE_STALL_S == 60.0


async def test_the_clis_dead_letter_read_gives_up_on_a_frozen_broker(frozen: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq list`'s read, the topic described (its partition count known) and the broker frozen before the records
    came: `RestoreStalled` (a Kafka error, one line from the CLI) once the limit passed, not aiokafka's wait for
    ever. The limit is shortened here to 0.5 s."""
    async def one_partition(_conn: KafkaConnection, names: list[str]) -> dict[str, int]:
        return dict.fromkeys(names, 1)

    monkeypatch.setattr(dlq, "partition_counts", one_partition)
    monkeypatch.setitem(changelog.read_to_end.__kwdefaults__, "stall_s", 0.5)
    async with asyncio.timeout(20):
        with pytest.raises(changelog.RestoreStalled):
            await dlq.read_to_end(KafkaConnection(bootstrap=frozen), "commune.dlq.intake")
