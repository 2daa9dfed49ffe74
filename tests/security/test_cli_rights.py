"""`commune-bus` run by a principal without the rights a command needs says so, and who has them: the truth about
what the broker refused, never a missing topic or a failed creation for a topic that is there (CLI trials, as a
subscriber and as the operator)."""

from __future__ import annotations

import os
import subprocess

import pytest

from schemas.topics import DLQ_INTAKE, DLQ_NOTIFY
from tests.integrator.conftest import CLI
from tests.security.conftest import SecureBroker

pytestmark = pytest.mark.kafka
SUBSCRIBER = "subscriber-example-app"


def cli(broker: SecureBroker, user: str, *args: str, stdin: str = "") -> tuple[int, str]:
    """`commune-bus *args` as `user`: its exit status and what it wrote to stderr, on one line."""
    env = {**os.environ, **broker.conn(user).environment(), "COLUMNS": "200"}
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
