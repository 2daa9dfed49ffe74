"""The registry's topic configs: how long records stay on a time-retained topic is its retention, not a segment."""

from __future__ import annotations

import pytest

from schemas.topics import DLQ_INTAKE, KEYS_DEAD_LETTERS, TOPICS, TopicSpec

pytestmark = pytest.mark.unit

KAFKA_SEGMENT_MS = 7 * 24 * 3600 * 1000
"""The broker's default `log.roll.ms` (7 days): a topic's `segment.ms` unless the registry sets one."""


def _ms(config: dict[str, str], key: str) -> int:
    """A config's milliseconds; a segment the registry leaves out is the broker's default, a retention -1."""
    return int(config.get(key, KAFKA_SEGMENT_MS if key == "segment.ms" else -1))


@pytest.mark.parametrize("spec", [t for t in TOPICS if _ms(dict(t.config), "retention.ms") > 0], ids=lambda t: t.name)
def test_a_time_retained_topic_rolls_segments_within_a_quarter_of_its_retention(spec: TopicSpec) -> None:
    """Kafka deletes closed segments only: a segment as long as the retention keeps records (and a restore reads
    them) for up to twice the retention; intake's de-duplication changelog and the gateway's claims had 7 days."""
    config = dict(spec.config)
    assert _ms(config, "segment.ms") <= _ms(config, "retention.ms") / 4


def test_intake_dead_letters_leave_before_the_day_keys_that_open_them() -> None:
    """A dead letter under a day key lives at most its retention and a segment; its day key, its topic's retention:
    with 7-day segments dead letters outlived their keys by up to 5 days, kept but unreadable."""
    letters, keys = dict(DLQ_INTAKE.config), dict(KEYS_DEAD_LETTERS.config)
    assert _ms(letters, "retention.ms") + _ms(letters, "segment.ms") < _ms(keys, "retention.ms")
