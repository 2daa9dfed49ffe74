"""`erase` and `keys rewrap` on the real broker look their topics up and never create them: aimed at a mistyped
namespace, each ends with exit 1 naming the missing topics, and the namespace stays empty (operator audit, 2026-12-06:
an erasure made them and said "0 keys destroyed", exit 0; a dry run of the re-wrap made the key topics)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from services.common.admin import list_topics
from services.common.settings import KafkaConnection
from tests.kafkatools import ROOT

pytestmark = pytest.mark.kafka


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "COLUMNS": "400"}  # one line per message
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("command", [("erase", "--cccd", "008123456789", "--requested-by", "operator:tester"),
                                     ("keys", "rewrap", "--dry-run")])
def test_a_mistyped_namespace_is_said_and_not_made(kafka_bootstrap: str, unique: str, command: tuple[str, ...]) -> None:
    """Exit 1, one line naming the namespace's missing topics and what to check; nothing erased; no topic of it."""
    ns = f"typo{unique}"
    done = _cli(kafka_bootstrap, *command, "--namespace", ns)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, said
    assert f"{ns}.commune.keys.applicants" in said and "check --namespace" in said, said
    assert "keys destroyed" not in said and "008123456789" not in said
    made = [t for t in asyncio.run(list_topics(KafkaConnection(bootstrap=kafka_bootstrap))) if t.startswith(f"{ns}.")]
    assert made == []
