"""`python -m services.common.topics_cli [SOURCES_FILE]`: create every registry topic on the configured broker
(`KAFKA_*`), and the raw topics bound to each source of the source registry (default `infra/sources.yaml`); first
give the existing ones the registry's config (`admin.reconcile_configs`: keys set by hand stay), so the check of
`ensure_topics` then finds them as the registry says."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from schemas.topics import TOPICS
from services.common.admin import ensure_topics, reconcile_configs
from services.common.refused import settings_checked
from services.common.settings import KafkaConnection
from services.sources import load_registry
from services.sources.topics import bound_topic

DEFAULT_SOURCES = Path(__file__).resolve().parents[2] / "infra" / "sources.yaml"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sources = Path(args[0]) if args else DEFAULT_SOURCES
    registry = load_registry(sources) if sources.exists() else None
    bound = [bound_topic(f, e) for e in registry.sources for f in e.families] if registry else []
    with settings_checked("topics"):
        conn = KafkaConnection()
    for drift in asyncio.run(reconcile_configs(conn, [*TOPICS, *bound])):
        print(f"topics: {drift.topic}: {drift.key} {drift.actual} -> {drift.wanted} (the registry's)")
    created = asyncio.run(ensure_topics(conn, [*TOPICS, *bound]))
    print(f"topics: {len(created)} created on {conn.bootstrap}" + (f" ({', '.join(created)})" if created else ""))


if __name__ == "__main__":
    main()
