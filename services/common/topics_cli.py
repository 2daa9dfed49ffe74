"""`python -m services.common.topics_cli [--namespace NS] [SOURCES_FILE]`: create every registry topic on the
configured broker (`KAFKA_*`), and the raw topics bound to each source of the source registry (default
`infra/sources.yaml`); first give the existing ones the registry's config (`admin.reconcile_configs`: keys set by
hand stay), so the check of `ensure_topics` then finds them as the registry says."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from schemas.topics import TOPICS, TopicSpec, scoped
from services.common import clients, closing
from services.common.admin import ensure_topics, reconcile_configs
from services.common.refused import settings_checked
from services.common.settings import KafkaConnection
from services.sources import load_registry
from services.sources.topics import bound_topic

DEFAULT_SOURCES = Path(__file__).resolve().parents[2] / "infra" / "sources.yaml"


def registry_topics(namespace: str = "", sources: Path | None = None) -> list[TopicSpec]:
    """Every topic of the topic registry and every raw topic bound to a source of `sources`, under `namespace`.
    A file given must be there (FileNotFoundError): a mistyped path created none of its sources' topics, and the
    command said "0 topics created" (audit). Without one, `DEFAULT_SOURCES`, or none if it is not there: an installed
    package has no `infra/`."""
    if sources is None and DEFAULT_SOURCES.exists():
        sources = DEFAULT_SOURCES
    registry = load_registry(sources) if sources is not None else None
    bound = [bound_topic(f, e, namespace) for e in registry.sources for f in e.families] if registry else []
    return [*(scoped(t, namespace) for t in TOPICS), *bound]


REPLICAS_KEPT = ("creating topics leaves an existing topic's replicas as they are: a partition reassignment changes "
                 "them (kafka-reassign-partitions.sh; docs/runbooks.md, \"Topics' replicas after growing to a "
                 "cluster\")")


async def fewer_replicas(conn: KafkaConnection, specs: Iterable[TopicSpec], wanted: int) -> list[str]:
    """`topic: N replicas, not wanted` for each existing topic of `specs` with a partition on fewer replicas than
    `wanted`: creating topics never changes an existing topic's replication factor (a reassignment does:
    kafka-reassign-partitions.sh), so topics made on one broker stay unreplicated on the cluster it grew into."""
    client = clients.admin(conn)
    await client.start()
    try:
        described = await client.describe_topics(sorted({s.name for s in specs}))
    finally:
        await closing.close_within("admin", "admin client", client.close)
    fewer = {t["topic"]: min(len(p["replicas"]) for p in t["partitions"]) for t in described
             if t.get("error_code", 0) == 0 and t["partitions"]}
    return [f"{name}: {n} replica{'s' * (n != 1)}, not {wanted}" for name, n in sorted(fewer.items()) if n < wanted]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.common.topics_cli", description=__doc__.split(":")[0])
    parser.add_argument("sources", nargs="?", type=Path, default=None,
                        help="source registry whose bound raw topics to create (infra/sources.yaml, when there)")
    parser.add_argument("--namespace", default="", help="topic prefix (tests, staging); none in production")
    args = parser.parse_args(argv)
    if args.sources is not None and not args.sources.is_file():
        parser.error(f"{args.sources}: no such file")
    specs = registry_topics(args.namespace, args.sources)
    with settings_checked("topics"):
        conn = KafkaConnection()
    try:  # no broker: one line, not aiokafka's traceback (audit of the front door)
        drifts = asyncio.run(reconcile_configs(conn, specs))
    except KafkaConnectionError:
        sys.exit(f"topics: no broker answers on {conn.bootstrap} (`make up` starts the local one; "
                 "KAFKA_BOOTSTRAP names another)")
    for drift in drifts:
        print(f"topics: {drift.topic}: {drift.key} {drift.actual} -> {drift.wanted} (the registry's)")
    created = asyncio.run(ensure_topics(conn, specs))
    print(f"topics: {len(created)} created on {conn.bootstrap}" + (f" ({', '.join(created)})" if created else ""))


if __name__ == "__main__":
    main()
