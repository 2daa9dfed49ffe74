"""`commune-bus` run by a principal without the rights a command needs says so, and who has them: the truth about
what the broker refused, never a missing topic or a failed creation for a topic that is there (CLI trials, as a
subscriber and as the operator)."""

from __future__ import annotations

import os
import subprocess

import pytest

from schemas.topics import DLQ_INTAKE, DLQ_NOTIFY, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT
from tests.integrator.conftest import CLI
from tests.keys_env import PRIVACY_ENV
from tests.security.conftest import SecureBroker

pytestmark = pytest.mark.kafka
SUBSCRIBER = "subscriber-example-app"


def cli(broker: SecureBroker, user: str, *args: str, stdin: str = "") -> tuple[int, str]:
    """`commune-bus *args` as `user`: its exit status and what it wrote to stderr, on one line."""
    env = {**os.environ, **PRIVACY_ENV, **broker.conn(user).environment(), "COLUMNS": "200"}
    done = subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)
    return done.returncode, " ".join(done.stderr.split())


@pytest.mark.parametrize("command, topic", [("dlq", DLQ_INTAKE.name), ("notify-dlq", DLQ_NOTIFY.name)])
def test_a_dlq_the_principal_may_not_read_is_said_so_with_the_rights_hint(secure_broker: SecureBroker, command: str,
                                                                         topic: str) -> None:
    """A subscriber listing dead letters: the DLQ exists, this principal may not describe it, said with the rights
    hint, exit 1 (it said "not visible to this principal (no ACL) or does not exist", as for a missing one)."""
    status, err = cli(secure_broker, SUBSCRIBER, command, "list")
    assert status == 1, err
    assert err.startswith(f"commune-bus: Kafka: [Error 29] TopicAuthorizationFailedError: {topic} (this principal "
                          "may not do that"), err
    assert "does not exist" not in err and "Traceback" not in err


def test_an_erasure_by_a_principal_without_the_rights_says_who_may_erase(secure_broker: SecureBroker) -> None:
    """A subscriber erasing: its principal may not describe the erasure's topics (they exist), said so with who may
    erase, exit 1; it said "the broker refused to create commune.keys.deadletters" (CLI trial)."""
    status, err = cli(secure_broker, SUBSCRIBER, "erase", "--stdin", stdin="cccd=008123456789\n")
    topics = ", ".join(t.name for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT))  # it reads the notices
    assert (status, err.split(": an erasure")[0]) == (1, f"erase: this principal may not describe {topics}"), err
    assert "only the operator (and the admin) may" in err and "create" not in err


def test_topics_create_as_the_operator_says_every_refusal_whole(secure_broker: SecureBroker) -> None:
    """The operator may not describe every topic's config: each such topic is named, the reason once, then the rights
    hint, exit 1; it was cut at 300 characters, in the middle of a word (CLI trial)."""
    status, err = cli(secure_broker, "operator", "topics", "create")
    assert status == 1, err
    assert err.startswith("commune-bus: Kafka: TopicConfigsNotReconciled: the broker refused the registry config of "
                          "commune."), err
    refused = err.split(" of ", 1)[1].split(": TopicAuthorizationFailedError (Topic authorization failed.) (this "
                                              "principal may not do that: `topics create`")[0]
    assert "commune.raw.dossier.src.thuong-lam-one-stop" in refused.split(", "), err
    assert err.count("TopicAuthorizationFailedError") == 1 and "…" not in err


def test_a_trace_by_a_subscriber_names_the_topics_it_may_not_describe_as_such(secure_broker: SecureBroker) -> None:
    """A subscriber tracing: it reads the canonical topics and may not describe the raw ones, which are named as
    topics it may not describe (it said "not visible (no ACL) or absent"), none as missing (they exist)."""
    status, err = cli(secure_broker, SUBSCRIBER, "trace", "TL-NONE-1")
    assert "not read (this principal may not describe them (no ACL)): " in err, err
    assert "commune.raw.dossier" in err.split("may not describe them (no ACL)): ")[1].split(";")[0], err
    assert "do not exist" not in err and "or absent" not in err and "Traceback" not in err
    assert (status, err.endswith("nothing found for 'TL-NONE-1'")) == (1, True), err
