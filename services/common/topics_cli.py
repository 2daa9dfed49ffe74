"""`python -m services.common.topics_cli`: create every registry topic on the configured broker."""

from __future__ import annotations

import asyncio
import os

from services.common.kafka import ensure_topics


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    created = asyncio.run(ensure_topics(bootstrap))
    print(f"topics: {len(created)} created on {bootstrap}" + (f" ({', '.join(created)})" if created else ""))


if __name__ == "__main__":
    main()
