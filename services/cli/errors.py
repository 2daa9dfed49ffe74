"""The CLI's own errors: `main` says each in one line, `commune-bus: <message>`, and exits 1."""

from __future__ import annotations

from collections.abc import Sequence


class CliError(Exception):
    """Base of the CLI's errors; the message is the whole line an operator reads."""


class TopicNotVisible(CliError):
    """Topics a command must read are not among those this principal may describe: Kafka does not tell a topic
    without a Describe ACL from one that does not exist, and reading "no partitions" would say "nothing there"."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = tuple(topics)
        one = len(self.topics) == 1
        super().__init__(f"{', '.join(self.topics)}: {'not' if one else 'none of them'} visible to this principal "
                         f"(no ACL) or {'does not exist' if one else 'exists'} (check --namespace, or create the "
                         "topics as admin: commune-bus topics create)")


class TopicMissing(CliError):
    """A topic a command needs does not exist: the broker said so to a principal that may describe it (one that may
    not is told TOPIC_AUTHORIZATION_FAILED whether or not the topic exists: `kafka_io.visible`)."""

    def __init__(self, *topics: str) -> None:
        self.topics = topics
        state = "does not exist" if len(topics) == 1 else "none of them exists"
        super().__init__(f"{', '.join(topics)}: {state} (check --namespace, or create the topics as admin: "
                         "commune-bus topics create)")


class BrokerSilent(CliError):
    """Something takes connections at every bootstrap address that can be reached, and none answers as a broker."""

    def __init__(self, bootstrap: str, waited_s: float) -> None:
        super().__init__(f"Kafka: nothing answered at {bootstrap} within {waited_s:g} s: something accepts the "
                         "connection there and says nothing (a broker frozen or overloaded, another program on that "
                         "port, a firewall dropping packets); check --bootstrap (KAFKA_BOOTSTRAP)")
