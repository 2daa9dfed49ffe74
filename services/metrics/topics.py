"""Topics the metrics service uses: the canonical inputs, its snapshots, and its private state changelog.

All are defined in `schemas.topics`. The changelog is compacted, one
record per entity (key = kind|commune|entity id, value = the entity's state), partition N holding the
entities of canonical partition N, so a worker that is assigned partition N restores exactly what it needs.
"""

from __future__ import annotations

from schemas.events import Family
from schemas.topics import CANONICAL, METRICS_CHANGELOG, METRICS_SNAPSHOTS, scoped


class Names:
    """Every topic name the metrics service uses, under one namespace."""

    def __init__(self, namespace: str) -> None:
        self.family_of = {scoped(CANONICAL[f], namespace).name: f for f in Family}
        self.changelog = scoped(METRICS_CHANGELOG, namespace).name
        self.snapshots = scoped(METRICS_SNAPSHOTS, namespace).name
        self.specs = [scoped(t, namespace) for t in (*CANONICAL.values(), METRICS_CHANGELOG, METRICS_SNAPSHOTS)]
