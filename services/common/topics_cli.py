"""`python -m services.common.topics_cli`: create every registry topic on the configured broker (`KAFKA_*`)."""

from __future__ import annotations

import asyncio

from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection


def main() -> None:
    conn = KafkaConnection()
    created = asyncio.run(ensure_topics(conn))
    print(f"topics: {len(created)} created on {conn.bootstrap}" + (f" ({', '.join(created)})" if created else ""))


if __name__ == "__main__":
    main()
