"""`commune-bus erase`: identifiers read from stdin stay off the command line; a requester the audit record cannot
hold is a one-line error (exit 2) before anything is erased, not a traceback after the keys were destroyed (Kafka
replaced by the privacy tests' in-memory fakes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from typer.testing import CliRunner

from services.cli.errors import TopicMissing
from services.cli.main import app
from tests.keys_env import PRIVACY_ENV
from tests.privacy.fakes import Broker

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("requester", ["x" * 129, "duty\x1b[2Jofficer", "line\nbreak"])
def test_a_requester_the_audit_record_cannot_hold_is_refused_before_anything(monkeypatch: pytest.MonkeyPatch,
                                                                              requester: str) -> None:
    """Too long, or with control characters: exit 2 with one line saying what --requested-by may be; no key is
    tombstoned, no topic made; the CCCD is not printed."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--cccd", "008123456789", "--requested-by", requester],
                                env={**PRIVACY_ENV, "COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "--requested-by is 1 to 128 characters, without control characters" in result.output
    assert "Traceback" not in result.output and "008123456789" not in result.output
    assert broker.committed == [] and broker.checked == 0


def test_a_requester_that_fits_erases(monkeypatch: pytest.MonkeyPatch) -> None:
    """128 characters fit: the keys go, with their audit record, and the subject (not the CCCD) is printed."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--cccd", "008123456789", "--requested-by", "x" * 128],
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "1 keys destroyed" in result.output and "008123456789" not in result.output
    assert len(broker.committed) == 1  # tombstones, the erasure mark and the audit record together


def test_a_requester_holding_markup_is_printed_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """A requester `[/oops] [link=...]` (no control character, so accepted): erased, and the line names it as written
    (before: the keys were destroyed, then printing the result raised MarkupError, exit 1)."""
    Broker({"k1"}).install(monkeypatch)
    who = "[/oops] [link=http://evil.example]ops[/link]\\"
    result = CliRunner().invoke(app, ["erase", "--cccd", "008123456789", "--requested-by", who],
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    assert f"requested by {who})" in result.output


def test_identifiers_read_from_stdin_stay_off_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--stdin` with `kind=value` lines: every identifier erased (one audit record each), none on argv, none
    printed, no warning."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--stdin"], input="cccd=008123456789\n\nphone = 0987654321\n",
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "(by cccd)" in result.output and "(by phone)" in result.output and "warning" not in result.output
    assert "008123456789" not in result.output and "0987654321" not in result.output
    assert len(broker.committed) == 2  # one transaction each: tombstones, the subject's erasure mark, its audit


def test_identifiers_given_as_options_are_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--phone` on the command line still works, with a warning that ps and the shell's history show it."""
    Broker({"k1"}).install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--phone", "0987654321"], env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "warning: identifiers given as options are visible to every local user (ps)" in result.output


@pytest.mark.parametrize("stdin", ["cccd=008123456789\n0987654321\n", "name=Trần Văn Minh\n", "", "cccd=\n"])
def test_a_stdin_that_is_not_identifiers_is_refused_unechoed(monkeypatch: pytest.MonkeyPatch, stdin: str) -> None:
    """A line that is not kind=value (a bare number, another kind), or nothing at all: exit 2, the line named by
    its number, its text not shown, nothing erased."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--stdin"], input=stdin, env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "of stdin is not kind=value" in result.output or "stdin holds no identifier" in result.output
    assert "0987654321" not in result.output and "Minh" not in result.output
    assert broker.committed == []


def test_an_applicant_sealed_without_an_identifier_is_erased_by_its_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--subject r-...` (as `trace` shows it on the dossier's canonical event): that subject's keys go, with their
    audit record; a day key's `dlq:<day>` or a made-up subject is refused, exit 2, before anything is done."""
    from services.privacy.keyring import Keyring

    subject = Keyring.anonymous_subject()
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--stdin"], input=f"subject={subject}\n",
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert f"erased subject {subject} (by subject): 1 keys destroyed" in result.output
    assert len(broker.committed) == 1
    for wrong in ("dlq:2026-12-03", "r-short"):
        refused = CliRunner().invoke(app, ["erase", "--subject", wrong], env={**PRIVACY_ENV, "COLUMNS": "400"})
        assert refused.exit_code == 2 and "not an identifier of one person: subject" in refused.output
    assert len(broker.committed) == 1


@pytest.mark.parametrize("kind, placeholder", [("phone", "-"), ("cccd", "000000000000"), ("zalo", "n/a"),
                                               ("email", "")])
def test_a_placeholders_subject_is_refused(monkeypatch: pytest.MonkeyPatch, kind: str, placeholder: str) -> None:
    """The subject a placeholder was sealed under before 2026-12-02 (every applicant who gave it shares it; `trace`
    shows it as any other): refused as a subject too, exit 2, nothing destroyed (review M4: it was accepted, and one
    erasure would have shredded every stranger's copies)."""
    from services.privacy import crypto
    from tests.privacy.keys import PEPPER

    broker = Broker({"k1"})
    broker.install(monkeypatch)
    shared = crypto.identifier_subject(PEPPER, kind, placeholder)
    result = CliRunner().invoke(app, ["erase", "--stdin"], input=f"subject={shared}\n",
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "a placeholder's, shared by every applicant" in " ".join(result.output.split())
    assert broker.committed == []


def test_an_erasure_aimed_at_a_namespace_without_its_topics_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong --namespace or --bootstrap: the erasure's topics are missing. Nothing is erased or asked, and the command
    ends naming them (it made them, and said "0 keys destroyed" with exit 0: operator audit)."""
    broker = Broker(set(), missing=("typo.commune.keys.applicants", "typo.commune.privacy.audit"))
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--cccd", "008123456789", "--namespace", "typo"],
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 1 and isinstance(result.exception, TopicMissing), result.output
    assert str(result.exception).startswith("typo.commune.keys.applicants, typo.commune.privacy.audit: none of them")
    assert broker.committed == [] and "keys destroyed" not in result.output


def test_an_erasure_committed_before_the_broker_went_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker stops answering after the erasure's transaction committed (its clean-up reads the keys again): the
    erasure's line was printed as it committed, then the failure (exit 1) with a line saying what is done. Before,
    only `KafkaConnectionError: Unable to bootstrap` was printed, and a run again said 0 keys destroyed (audit)."""
    broker = Broker({"k1"}, fail_after_commit=KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9540)]"))
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--stdin"], input="cccd=008123456789\nphone=0987654321\n",
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 1 and isinstance(result.exception, KafkaConnectionError), result.output
    assert len(broker.committed) == 1  # the CCCD's subject; the phone's never began
    lines = result.output.splitlines()
    assert lines[0].startswith("erased subject a-") and lines[0].count("(by cccd): 1 keys destroyed (audit ") == 1
    assert lines[1:] == ["erase: stopped; the erasures printed above (1) are done; running it again is safe"]


def test_a_principal_that_may_not_describe_the_erasure_topics_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A principal without the rights (a subscriber): exit 1, one line naming the topics it may not describe and who
    may erase (before: "the broker refused to create commune.keys.deadletters", which existed; CLI trial); nothing
    is made, nothing erased, the CCCD not printed."""
    broker = Broker({"k1"}, forbidden=("commune.keys.applicants", "commune.privacy.audit"))
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--stdin"], input="cccd=008123456789\n",
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert said.startswith("erase: this principal may not describe commune.keys.applicants, commune.privacy.audit: "
                           "an erasure reads and writes"), said
    assert "only the operator (and the admin) may; nothing was erased" in said and "create" not in said
    assert "008123456789" not in said and broker.committed == [] and broker.checked == 0


def test_an_erasure_with_nothing_to_ask_on_is_one_line_without_a_warning(tmp_path: Path) -> None:
    """No identifier and no terminal (`erase < /dev/null`, in a session without one): one line saying how to give
    them, exit 2; getpass warned "Password input may be echoed", read stdin, and ended in "Aborted." (CLI trial)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KAFKA_BOOTSTRAP": "127.0.0.1:1", **PRIVACY_ENV}
    done = subprocess.run([sys.executable, "-c", "from services.cli.main import main; main()", "erase"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60,
                          cwd=Path(__file__).parents[2], start_new_session=True)  # no controlling terminal
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["erase: no identifier given, and no terminal to ask for the CCCD on: give "
                                        "kind=value lines on stdin with --stdin (e.g. cccd=...), or an option such "
                                        "as --cccd"], done.stderr


@pytest.mark.parametrize("forbidden", [(), ("commune.keys.applicants",)])
def test_the_cccd_is_asked_for_only_once_the_principal_may_erase(monkeypatch: pytest.MonkeyPatch,
                                                                 forbidden: tuple[str, ...]) -> None:
    """No identifier given, a terminal to ask on: a principal without the rights is refused before the prompt (it
    asked for the CCCD, then refused: a subscriber typed a citizen's number for nothing; a review); one with them
    is asked once and erases."""
    from services.cli import erase as erase_command

    asked: list[str] = []
    monkeypatch.setattr(erase_command, "_can_ask", lambda: True)
    monkeypatch.setattr(erase_command.getpass, "getpass", lambda prompt: asked.append(prompt) or "008123456789")
    broker = Broker({"k1"}, forbidden=forbidden)
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase"], env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert "008123456789" not in result.output
    if forbidden:
        assert result.exit_code == 1 and "may not describe commune.keys.applicants" in result.output, result.output
        assert asked == [] and broker.committed == []
    else:
        assert result.exit_code == 0 and "1 keys destroyed" in result.output, result.output
        assert asked == ["CCCD: "] and len(broker.committed) == 1
