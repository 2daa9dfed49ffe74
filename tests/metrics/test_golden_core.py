"""The pure core against the independent oracle of `golden`, without a broker: every path of the golden event set
(out of order, duplicated), including a completion followed by a later open status and sticky facts said on an older
event only (test audit: both merge rules could be broken and every test still passed)."""

from __future__ import annotations

import pytest

from schemas.dossier import DossierStatusChanged
from schemas.topics import PARTITIONS
from services.common.partitioner import partition_for
from services.metrics.exposition import render
from services.metrics.partition import PartitionState
from tests.metrics.golden import NOW, event_set, expected, restricted, summed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", [20251103, 5, 99, 7])
def test_the_core_exports_the_oracles_figures(seed: int) -> None:
    events = event_set(seed)
    parts: dict[int, PartitionState] = {}
    for e in events:
        p = partition_for(e.commune.encode(), PARTITIONS)
        parts.setdefault(p, PartitionState(p, {})).apply(e)
    want = expected(events, NOW)
    assert restricted(summed(render(parts.values(), NOW)), want) == want


def test_the_golden_set_holds_the_paths_the_merges_must_get_right() -> None:
    """The scenarios the oracle is only worth something with: a dossier processed then opened again, fees and
    digitisation said on an older event only, and a withdrawal of the same time as the in-progress event before it
    whose id sorts first."""
    dossiers = [e for e in event_set() if isinstance(e, DossierStatusChanged)]
    by_id = {e.id: e for e in dossiers}
    assert any(by_id[i.replace("-e9", "-e5")].time > by_id[i].time for i in by_id
               if i.endswith("-e9") and i.replace("-e9", "-e5") in by_id)
    early = [e for e in dossiers if e.id.endswith("-e2") and e.data.digitised and e.data.fees]
    assert early and all(not by_id[e.id.replace("-e2", "-e4")].data.digitised for e in early)
    withdrawn = [e for e in dossiers if e.id.endswith("-a7")]
    assert withdrawn and all(by_id[e.id.replace("-a7", "-e4")].time == e.time for e in withdrawn)
