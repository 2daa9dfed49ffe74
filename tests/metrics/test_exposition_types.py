"""The commune totals are gauges: a later event can lower them, and a counter must never go down (ADR 0029).

Prometheus reads a counter that goes down as a restart of its process: `rate()` and `increase()` then count the
whole total again, a spike of thousands on a graph for one broadcast retried after it failed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from schemas.admin import commune_provinces
from schemas.envelope import Event
from schemas.topics import PARTITIONS
from services.common.partitioner import partition_for
from services.metrics.exposition import TOTALS, render
from services.metrics.partition import PartitionState
from tests.metrics.events import broadcast, dossier, scheduled, training, visit_completed

pytestmark = pytest.mark.unit
C = "02269"
NOW = 1.9e9  # after every due date below


def samples(part: PartitionState) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]]:
    """(sample name, labels) -> (its family's type, value), as Prometheus parses /metrics (the parser, checked on
    the first call of each test against prometheus-client's, which is too slow for hundreds of examples)."""
    text = render([part], NOW)
    kinds = dict(TYPE.findall(text))
    out = {}
    for name, labels, value in SAMPLE.findall(text):
        family = name if name in kinds else re.sub(r"_(bucket|sum|count)$", "", name)
        out[(name, tuple(sorted(LABEL.findall(labels))))] = (kinds[family], float(value))
    return out


TYPE = re.compile(r"^# TYPE (\w+) (\w+)$", re.M)
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.M)
LABEL = re.compile(r'(\w+)="([^"]*)"')


def test_the_parser_reads_what_prometheus_client_reads() -> None:
    part = PartitionState(0, {})
    for e in POOL:
        part.apply(e)
    official = {(s.name, tuple(sorted(s.labels.items()))): (fam.type, s.value)
                for fam in text_string_to_metric_families(render([part], NOW)) for s in fam.samples}
    assert samples(part) == official and any(kind == "histogram" for kind, _ in official.values())


def test_a_failed_broadcast_completed_on_retry_lowers_a_gauge() -> None:
    part = PartitionState(0, {})
    for e in (scheduled(C, "A1", "s1", 0), broadcast(C, "A1", "C1", "failed", "b1", 1)):
        part.apply(e)
    failed = ("commune_broadcasts", (("category", "crop_disease"), ("commune", C), ("outcome", "failed"),
                                     ("province", "08")))
    assert samples(part)[failed] == ("gauge", 1.0)
    part.apply(broadcast(C, "A1", "C1", "completed", "b2", 2))
    assert samples(part).get(failed, ("gauge", 0.0)) == ("gauge", 0.0)
    assert {f.name for f in TOTALS} <= {fam.name for fam in text_string_to_metric_families(render([part], NOW))}


# events that move an entity from one label to another or lower a reported figure, in any order
POOL: Sequence[Event] = (
    dossier(C, "A", 2, "a2", 1),
    dossier(C, "A", 9, "a9", 30),  # completed on time (due 3 days after T0)
    dossier(C, "A", 10, "a10", 120, end_hours=120),  # a later completion, late
    dossier(C, "A", 5, "a5", 40, channel="online"),  # the channel the dossier is now counted under
    visit_completed(C, "V1", "v1", 5, 10, 20, 3, 2),
    visit_completed(C, "V1", "v2", 6, 4, 8, 1, 1),  # a corrected report
    training(C, "T1", "t1", 3, 30),
    training(C, "T1", "t2", 4, 12),
    scheduled(C, "A1", "s1", 0),
    scheduled(C, "A1", "s2", 1, category="public_service"),
    broadcast(C, "A1", "C1", "failed", "b1", 1),
    broadcast(C, "A1", "C1", "completed", "b2", 2),
)


def lowered(order: Sequence[int]) -> dict[tuple[str, tuple[tuple[str, str], ...]], str]:
    """The samples (with their family's type) that went down as the events of POOL were applied in `order` (a
    sample gone counts as 0); histograms' buckets left out: a later completion can move a dossier's duration to
    another bucket, and Prometheus's text format has no gauge histogram (ADR 0029: read them raw)."""
    part = PartitionState(0, {})
    before: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]] = {}
    out = {}
    for i in order:
        part.apply(POOL[i])
        now = samples(part)
        out |= {key: kind for key, (kind, value) in before.items()
                if kind != "histogram" and now.get(key, (kind, 0.0))[1] < value}
        before = now
    return out


@settings(max_examples=300, deadline=None)
@given(st.permutations(range(len(POOL))), st.integers(1, len(POOL)))
def test_whatever_goes_down_is_typed_gauge(order: list[int], n: int) -> None:
    """Whatever the events and their order, a sample that goes down after an event is a gauge's, never a counter's."""
    assert set(lowered(order[:n]).values()) <= {"gauge"}


def test_the_events_do_lower_totals() -> None:
    """The property above checks something: in the pool's own order, a completion reclassified late and a failed
    broadcast completed on a retry lower their totals (both were counters)."""
    assert {"commune_broadcasts", "commune_dossiers_completed"} <= {name for name, _ in lowered(range(len(POOL)))}


def test_every_commune_of_the_owned_partitions_shows_heard_or_never_heard() -> None:
    """`commune_heard`: 1 for a commune an event came from, 0 for each other commune of the partition; the six
    partitions together list the registry's 3,321 communes once each."""
    own = partition_for(C.encode(), PARTITIONS)
    parts = [PartitionState(p, {}) for p in range(PARTITIONS)]
    parts[own].apply(dossier(C, "A", 2, "a2", 1))
    heard = {s.labels["commune"]: (s.labels["province"], s.value)
             for fam in text_string_to_metric_families(render(parts, NOW)) if fam.name == "commune_heard"
             for s in fam.samples}
    assert heard[C] == ("08", 1.0)
    assert {c: p for c, (p, _) in heard.items()} == commune_provinces()
    assert sum(v for _, v in heard.values()) == 1
    alone = {s.labels["commune"] for fam in text_string_to_metric_families(render([parts[own]], NOW))
             if fam.name == "commune_heard" for s in fam.samples}
    assert C in alone and alone == {c for c in commune_provinces() if partition_for(c.encode(), PARTITIONS) == own}
