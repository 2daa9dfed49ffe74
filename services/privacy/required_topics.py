"""The topics an erasure or a key re-wrap works on are looked up, never created.

Both created the topics they were missing. Aimed at a mistyped namespace (or another cluster), an erasure made that
namespace's key, audit and notice topics and reported "0 keys destroyed" with exit 0, and a re-wrap's dry run made its
key topics, although a dry run should write nothing (operator audit, 2026-12-06). `commune-bus topics create` (as the
admin) and the services make the topics; a command that finds them missing names them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress

from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from schemas.topics import TopicSpec
from services.common.admin import TopicConfigError, _admin, check_configs, topic_errors
from services.common.logging import SafeMessage
from services.common.settings import KafkaConnection

ASKED = 10
ASKED_EVERY_S = 0.1
"""A topic just created may not be in every broker's metadata yet: it is asked for again, for a second in all, before
it counts as missing (as `cli.kafka_io.visible` does)."""


class TopicsMissing(SafeMessage, KafkaError):
    """Topics a privacy command needs do not exist: the broker said so; the message names them. A Kafka error, as
    `admin.TopicsNotCreated` is: the gateway answers an erasure 503, not done, send it again (once they are made)."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = tuple(topics)
        super().__init__(f"{', '.join(self.topics)}: {'does' if len(self.topics) == 1 else 'do'} not exist")


async def require(conn: KafkaConnection, names: Sequence[str]) -> None:
    """Return once every topic of `names` exists; otherwise raise `TopicsMissing` naming those the broker still says do
    not exist after a second. Any other answer (a principal that may not describe them) is left to the caller's own
    check and to its sends, which are refused."""
    for attempt in range(ASKED):
        codes = await topic_errors(conn, names)
        missing = [name for name, code in codes.items() if code == UnknownTopicOrPartitionError.errno]
        if not missing:
            return
        if attempt + 1 < ASKED:
            await asyncio.sleep(ASKED_EVERY_S)
    raise TopicsMissing(missing)


async def configs_checked(conn: KafkaConnection, specs: Sequence[TopicSpec]) -> None:
    """Compare the configs of those of `specs` that exist with the registry's (`admin.check_configs`: a warning and
    `commune_topic_config_drift`), creating none. The gateway, which erases, checks the erasure topics so: an audit
    topic left at CreateTime after the upgrade to ADR 0043 dates every erasure by the eraser's clock, and no service
    checked it, so the drift gauge the runbook sends operators to said nothing (upgrade audit). A drift a service must
    not run on (`TopicConfigError`) is logged and counted like any other here, never raised: the topics' own services
    refuse to start on it, and the gateway's ingest, which needs none of them, went down with it (its claims reader
    ended, run after run; review)."""
    async with _admin(conn) as client:
        existing = set(await client.list_topics())
        with suppress(TopicConfigError):  # said already, topic by topic (`topics.config_drift`)
            await check_configs(client, [spec for spec in specs if spec.name in existing and spec.config])
