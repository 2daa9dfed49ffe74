"""Namespaces of a benchmark run: each carries the run's token, so a run deletes only the topics it made.

`python -m bench` sets `BENCH_RUN` for itself and the processes it starts; a module run on its own draws a token.
Another run on the same broker at the same time (another engineer, a test run) keeps its topics.
"""

from __future__ import annotations

import os
import uuid

RUN = os.environ.setdefault("BENCH_RUN", uuid.uuid4().hex[:6])


def namespace(tag: str = "") -> str:
    """A fresh namespace of this run: `bench<run><tag><random>`."""
    return f"bench{RUN}{tag}{uuid.uuid4().hex[:6]}"


def ours(topic: str) -> bool:
    """`topic` lies in a namespace of this run."""
    return topic.startswith(f"bench{RUN}")
