"""`infra/kafka/kafka.sh acls` without `KAFKA_SECURE=1`: only the secure broker has users and ACLs, so the command
says so at once and names the one to run (the runbooks wrote `infra/kafka/kafka.sh acls`, which tried the PLAINTEXT
broker's port as the secure broker's admin and ended after 30 s in a traceback)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


def test_acls_on_the_plaintext_broker_names_the_secure_command(tmp_path: Path) -> None:
    """`acls` with KAFKA_SECURE unset exits 2 within seconds, names `KAFKA_SECURE=1 ... acls`, and asks no broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")} | {
        "KAFKA_SECRETS_DIR": str(tmp_path / "secrets"), "KAFKA_STATE_DIR": str(tmp_path / "state"),
        "PYTHON": "/bin/false"}  # were a broker asked, this python would fail: the exit code would be 1, not 2
    done = subprocess.run([str(ROOT / "infra/kafka/kafka.sh"), "acls"], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "KAFKA_SECURE=1" in done.stderr and "acls" in done.stderr, done.stderr
