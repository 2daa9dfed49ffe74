"""The tracker's assignment bookkeeping: restores taken only when current, stale partitions restored again."""

from __future__ import annotations

import pytest

from services.notify.deadline_assignment import Assignment

pytestmark = pytest.mark.unit


def test_a_restore_overtaken_by_later_assignments_is_redone_for_partitions_owned_elsewhere_meanwhile() -> None:
    """Partition 0 went to another worker while ours was restoring, then came back: it is restored again."""
    a = Assignment(partitions=6)
    a.assigned({0, 1, 2})
    first = a.pending()
    assert first is not None and first.wanted == {0, 1, 2}
    a.revoked()
    a.assigned({1, 2, 3})  # 0 owned by another worker in this generation
    a.revoked()
    a.assigned({0, 1, 2})  # back, with whatever the other worker wrote meanwhile
    assert not a.taken(first) and a.owned == set()
    again = a.pending()
    assert again is not None and again.wanted == {0, 1, 2} and 0 in again.stale and 3 in again.stale
    assert a.taken(again) and a.owned == {0, 1, 2} and a.pending() is None


def test_nothing_is_owned_while_rebalancing_and_an_unchanged_assignment_needs_no_restore() -> None:
    """A revocation empties what is ticked; the same partitions again cost no restore once none was left out."""
    a = Assignment(partitions=6)
    a.assigned(set(range(6)))
    todo = a.pending()
    assert todo is not None and todo.stale == set() and a.taken(todo)
    a.revoked()
    assert a.owned == set() and a.pending() is None
    a.assigned(set(range(6)))
    same = a.pending()
    assert same is not None and same.stale == set() and a.taken(same) and a.pending() is None
