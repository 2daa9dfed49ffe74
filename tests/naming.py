"""Names of per-test namespaces that say which test run made them.

Several runs may share one local broker (developers, CI, helper sessions). Each
run draws a token of its own; every namespace it makes contains it, so the run
deletes at its end only the topics of its own namespaces, never those of a run
still going beside it.
"""

from __future__ import annotations

import uuid

RUN = "z" + uuid.uuid4().hex[:4]
"""This run's token (one per pytest process; chaos runs draw their own). The `z` is no hex digit and no prefix of
ours has one, so the token is found only where a run put it, never inside another run's random hex."""


def unique(length: int = 10) -> str:
    """A hex suffix unique to one test, beginning with this run's token."""
    return RUN + uuid.uuid4().hex[:max(1, length - len(RUN))]


def ours(topic: str) -> bool:
    """`topic` is in a namespace this run made (the namespace is the part before the first dot)."""
    namespace, dot, _ = topic.partition(".")
    return bool(dot) and RUN in namespace
