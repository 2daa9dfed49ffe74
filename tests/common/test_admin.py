"""The pure half of services/common/admin.py: which topics are laid out unlike the registry."""

from __future__ import annotations

import pytest

from schemas.topics import Kind, TopicSpec
from services.common.admin import TopicLayoutError, check_layout

pytestmark = pytest.mark.unit


def spec(name: str, partitions: int) -> TopicSpec:
    return TopicSpec(name=name, kind=Kind.INTERNAL, key="test key", description="test topic", partitions=partitions)


def test_check_layout_names_every_wrong_topic() -> None:
    """Only topics that exist with another count are reported, each with both counts; missing ones are not."""
    specs = [spec("a", 6), spec("b", 6), spec("c", 6)]
    check_layout(specs, {"a": 6})
    with pytest.raises(TopicLayoutError) as raised:
        check_layout(specs, {"a": 6, "b": 3, "c": 12})
    assert "b has 3 partitions, the registry says 6" in str(raised.value)
    assert "c has 12 partitions, the registry says 6" in str(raised.value)
    assert "a has" not in str(raised.value)




def test_refusals_for_the_same_reason_are_said_once_with_every_topic() -> None:
    """Nine topics refused for one reason: the reason once, after every topic (it was said nine times, and the CLI
    cut the 914 characters mid-word)."""
    from aiokafka.errors import TopicAuthorizationFailedError

    from services.common.admin import grouped, refusal

    denied = [refusal(f"t{n}", TopicAuthorizationFailedError.errno, "Topic authorization failed.") for n in range(3)]
    assert grouped([*denied, refusal("u", 41, None)]) == ("t0, t1, t2: TopicAuthorizationFailedError (Topic "
                                                          "authorization failed.); u: NotControllerError")
