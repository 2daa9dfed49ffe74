"""Names of per-test namespaces that say which test run made them.

Several runs may share one local broker (developers, CI, helper sessions). Each
run draws a token of its own; every namespace it makes contains it, so the run
deletes at its end only the topics of its own namespaces, never those of a run
still going beside it. Within a run, no suffix is handed out twice: a test's
namespace is empty when it begins.
"""

from __future__ import annotations

import uuid

RUN = "z" + uuid.uuid4().hex[:4]
"""This run's token (one per pytest process; chaos runs draw their own). The `z` is no hex digit and no prefix of
ours has one, so the token is found only where a run put it, never inside another run's random hex."""
ATTEMPTS = 1000
_GIVEN: set[str] = set()


def unique(length: int = 10) -> str:
    """A hex suffix unique to one test, beginning with this run's token, never one this process handed out before.

    The token takes 5 of `length` characters: `unique(8)` leaves 3 hex digits, 4,096 suffixes. Two chaos rows of one
    run drew the same one (CI: metrics-sigkill the namespace intake-sigkill had used before it in the run, whose topics
    the run keeps until its end): the metrics workers counted intake's 6,400 canonical events of 40 communes with the
    row's own, 120 series above the oracle."""
    for _ in range(ATTEMPTS):
        suffix = RUN + uuid.uuid4().hex[:max(1, length - len(RUN))]
        if suffix not in _GIVEN:
            _GIVEN.add(suffix)
            return suffix
    raise RuntimeError(f"no suffix of {length} characters left unused in this run ({len(_GIVEN)} handed out)")


def ours(topic: str) -> bool:
    """`topic` is in a namespace this run made (the namespace is the part before the first dot)."""
    namespace, dot, _ = topic.partition(".")
    return bool(dot) and RUN in namespace
