"""Pure rules of `dlq replay` about write rights: which dead letters this principal may write back, how the others are
reported, and the command that replays them as admin.

A dead letter goes back to the raw topic it was read from, and the operator may not write a source's own raw topic
(`commune.raw.<family>.src.<id>`, ADR 0018: only that source's principal and the admin may). Those are left as they
are (not replayed, not logged) and named, with the admin command, while the others are replayed (user walkthrough:
one such letter stopped a `not_json` replay of 291 at 0, and `--source` could not leave it out: it has no source).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.cli.deadletters import DeadLetter, Filters
from services.cli.masking import names_masked
from services.common.kip430 import Right

ADMIN_ENV = 'set -a; . "$(infra/kafka/kafka.sh env admin)"; set +a'
"""How the admin's `KAFKA_*` settings are taken on the local secure broker (`make up`, `make demo`)."""
UNCHECKED = ("this broker does not tell a client its rights (KIP-430, Kafka 2.3+), so write rights are checked only "
             "by the real run")
"""Said by `--dry-run` when the broker could not say which topics this principal may write."""


@dataclass(frozen=True)
class Split:
    mine: list[DeadLetter]
    """The dead letters this principal may write back (all of them when the broker could not say)."""
    left: dict[str, list[DeadLetter]] = field(default_factory=dict)
    """The others, by the raw topic they go back to."""
    missing: frozenset[str] = frozenset()
    """Topics among `left` the broker says do not exist."""
    checked: bool = True
    """Whether the broker said which topics this principal may write."""

    @property
    def left_count(self) -> int:
        return sum(len(letters) for letters in self.left.values())


def split(letters: Iterable[DeadLetter], rights: Mapping[str, Right] | None) -> Split:
    """`letters` by whether `rights` lets this principal write their topic; all of them "mine" when `rights` is None
    (the broker could not say: the real run's writes will)."""
    letters = list(letters)
    if rights is None:
        return Split(letters, checked=False)
    mine: list[DeadLetter] = []
    left: dict[str, list[DeadLetter]] = {}
    for d in letters:
        topic = d.context.source_topic
        if rights.get(topic) == "write":
            mine.append(d)
        else:
            left.setdefault(topic, []).append(d)
    return Split(mine, left, frozenset(t for t in left if rights.get(t) == "missing"))


def topics_said(left: Mapping[str, Sequence[object]], missing: Iterable[str] = ()) -> str:
    """`topic (count)` for each topic, those that do not exist said so."""
    gone = set(missing)
    return ", ".join(f"{topic} ({len(letters)}{', does not exist' if topic in gone else ''})"
                     for topic, letters in sorted(left.items()))


def why(left: Mapping[str, Sequence[object]], missing: Iterable[str] = ()) -> str:
    """Why `left` were not replayed and whose they are, without the command."""
    return (f"this principal may not write the raw topics they go back to: {topics_said(left, missing)} (a source's "
            "own raw topic, commune.raw.<family>.src.<id>, is written only by that source and the admin, ADR 0018)")


def admin_command(filters: Filters, set_headers: Mapping[str, str], namespace: str, topics: Iterable[str]) -> str:
    """The `dlq replay` that replays, as admin, the dead letters left on `topics`: the same filters (times as the
    instants this run took them for, not "30m" again), the same `--set-header` fixes, only those topics. A value typed
    that masking would change (a personal number or e-mail in a source or a header) is not printed, masked or not:
    a masked `--source` copied as told matched nothing, and a masked header would spend the one replay of those
    letters with a corrupted value (operator audit). A placeholder stands in its place, which `dlq replay` refuses
    (`is_placeholder`), and the command is preceded by a note saying to put the value back."""
    args = ["commune-bus", "dlq", "replay"]
    held: list[str] = []

    def typed(value: str, shown: str) -> str:
        if names_masked(value) == value:
            return value
        held.append(f"<your {shown}>")
        return held[-1]

    for reason in sorted(filters.reasons):
        args += ["--reason", reason.value]
    if filters.source is not None:
        args += ["--source", typed(filters.source, "--source")]
    if filters.since is not None:
        args += ["--since", filters.since.isoformat()]
    if filters.until is not None:
        args += ["--until", filters.until.isoformat()]
    for topic in sorted(set(topics)):
        args += ["--topic", topic]
    for key, value in set_headers.items():
        named = key if names_masked(key) == key else ""
        args += ["--set-header", typed(f"{key}={value}", f"--set-header {named}".strip())]
    if namespace:
        args += ["--namespace", namespace]
    command = shlex.join(args)
    if not held:
        return command
    return (f"put what you gave in place of {', '.join(held)} (it may hold a personal number or e-mail, not printed; "
            f"as printed, the command is refused): {command}")


def is_placeholder(value: str) -> bool:
    """Whether `value` is a placeholder `admin_command` printed for a value it does not print."""
    return value.startswith("<your --") and value.endswith(">")


def left_for_admin(s: Split, filters: Filters, set_headers: Mapping[str, str], namespace: str) -> str:
    """The end of `replay`'s last line when letters were left: how many, why, and the admin command, last (to copy)."""
    return (f"{s.left_count} not replayed, left as they are: {why(s.left, s.missing)}; replay them as admin (the "
            f"admin principal's KAFKA_* settings; on the local secure broker: {ADMIN_ENV}): "
            f"{admin_command(filters, set_headers, namespace, s.left)}")
