"""How `commune-bus` says an error it stops on (`main.main`): a Kafka error's message, and what to check."""

from __future__ import annotations

from aiokafka.errors import KafkaError

from services.cli.kafka_io import Unacknowledged
from services.common.closing import StartUnanswered, Unanswered
from services.common.logging import SafeMessage

CLIENT_MESSAGE_CHARS = 300
"""A client's own message (aiokafka's, a broker's) is said up to about this long: it may hold a whole request or
broker list. The project's own errors (`SafeMessage`: the topics a broker refused, each named) are said whole: cut at
300 characters mid-word, `topics create` as the operator named some of the topics refused and broke off in the
middle of a word (CLI trial)."""


WORD_CHARS = 40
"""A cut goes back to a space at most this far: past it (a broker list, a long token) it falls where the limit does
(a review: 'a' * 500 said nothing but "… (502 more characters)")."""


def clipped(text: str, limit: int = CLIENT_MESSAGE_CHARS) -> str:
    """`text`, or, if longer than `limit`, its words that fit in `limit`, then an ellipsis saying how much is left."""
    if len(text) <= limit:
        return text
    head = text[:limit + 1]  # a word ending at `limit` is whole
    kept = (head.rsplit(" ", 1)[0] if " " in head else "").rstrip(" ,;:")
    if len(kept) < limit - WORD_CHARS:  # no space near the limit (a long broker list, one long token): cut there
        kept = text[:limit]
    return f"{kept} … ({len(text) - len(kept)} more characters)"


def kafka_message(exc: KafkaError) -> str:
    """The error's name once (aiokafka's message often begins with it), then its message: whole if it is one of
    ours, else `clipped`."""
    text = str(exc) if isinstance(exc, SafeMessage) else clipped(str(exc))
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


KAFKA_HINT = ("check --bootstrap (KAFKA_BOOTSTRAP) and the KAFKA_* credentials; on the local secure broker: "
              "set -a; . \"$(infra/kafka/kafka.sh env operator)\"; set +a")
RIGHTS_HINT = ("this principal may not do that: `topics create`, reading the raw topics (a trace's raw stage) and a "
               "demo namespace's topics are admin's; on the local secure broker: set -a; . \"$(infra/kafka/kafka.sh "
               "env admin)\"; set +a")
"""Said instead of KAFKA_HINT for a refusal by the ACLs: loading the operator's settings, which the operator had
already loaded, was no help (new-user trial: `topics create` as the operator)."""


UNANSWERED_HINT = ("the broker stopped answering: once it answers, run the command again (intake publishes each event "
                   "id once)")
"""Said instead of KAFKA_HINT when a broker that had answered went silent (`kafka_io.Unacknowledged`, `publish`):
the bootstrap and credentials had worked (review)."""


NO_PRODUCER_ID_HINT = ("that writer wrote nothing; run the command again once the broker answers (a transactional "
                       "writer's coordinator needs as many brokers up as transaction.state.log.replication.factor)")
"""Said instead of KAFKA_HINT when a writer's start got no producer id (`closing.StartUnanswered`): the bootstrap
and the credentials had worked."""


WRITE_UNANSWERED_HINT = ("the broker stopped answering: once it answers, run the command again; it does what is "
                         "left (an erasure destroys the keys still live, a re-wrap those still under an old KEK)")
"""Said when an erasure's or a re-wrap's transaction went unanswered (`closing.Unanswered`)."""


def kafka_hint(exc: KafkaError) -> str:
    if isinstance(exc, Unacknowledged):
        return UNANSWERED_HINT
    if isinstance(exc, StartUnanswered):
        return NO_PRODUCER_ID_HINT
    if isinstance(exc, Unanswered):
        return WRITE_UNANSWERED_HINT
    refused = "Authorization" in type(exc).__name__ or "authorization failed" in str(exc).lower()
    return RIGHTS_HINT if refused else KAFKA_HINT


PRIVACY_HINT = ("sealed records are opened with the key store: PRIVACY_KEK(_FILE) and PRIVACY_PEPPER(_FILE); `make "
                "demo` prints its own")
