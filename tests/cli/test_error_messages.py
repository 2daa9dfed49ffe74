"""How `commune-bus` says the Kafka error it stops on: the project's own message whole, a client's cut at a word,
said to be cut; never mid-word at 300 characters (CLI trial: `topics create` as the operator)."""

from __future__ import annotations

import sys

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from services.cli import main as cli_main
from services.cli.said import WRITE_UNANSWERED_HINT
from services.common import logging as cli_logging
from services.common.admin import TopicConfigsNotReconciled, refusal
from services.common.closing import Unanswered

pytestmark = pytest.mark.unit


def said(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: Exception) -> tuple[int, str]:
    """`commune-bus` whose command raised `failure`: its exit status and what it wrote to stderr, on one line."""

    def app() -> None:
        raise failure

    monkeypatch.setattr(cli_main, "app", app)
    monkeypatch.setattr(sys, "argv", ["commune-bus"])
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)  # the process's, not this test's
    with pytest.raises(SystemExit) as ended:
        cli_main.main()
    return int(ended.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_a_refusal_naming_many_topics_is_said_whole(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The broker refusing the config of twelve topics, each for its reason (400 characters and more): every topic
    and reason said, then the rights hint; it was cut at 300 characters, in the middle of a word."""
    refused = [refusal(f"commune.raw.dossier.src.source-{n:02}", TopicAuthorizationFailedError.errno,
                       f"Topic authorization failed, case {n}.") for n in range(12)]
    message = "the broker refused the registry config of " + "; ".join(refused)
    status, err = said(monkeypatch, capsys, TopicConfigsNotReconciled(message))
    assert len(message) > 600 and status == 1
    assert err.startswith(f"commune-bus: Kafka: TopicConfigsNotReconciled: {message} (this principal may not do "
                          "that"), err


def test_a_long_client_message_is_cut_at_a_word_and_said_to_be(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """aiokafka's message past 300 characters: cut after a whole word, then an ellipsis and how much was left out."""
    brokers = ", ".join(f"('broker-{n}.commune.example', 9092)" for n in range(20))
    status, err = said(monkeypatch, capsys, KafkaConnectionError(f"Unable to bootstrap from [{brokers}]"))
    shown = err.removeprefix("commune-bus: Kafka: ").split(" (check --bootstrap")[0]
    head, _, left = shown.partition(" … (")
    assert status == 1 and left.endswith(" more characters)"), err
    assert head.endswith("9092)") and len(head) <= 300, head
    assert len(head) + int(left.split()[0]) == len(f"KafkaConnectionError: Unable to bootstrap from [{brokers}]")


def test_a_write_given_up_says_to_run_the_command_again(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An erasure's or a re-wrap's transaction unanswered (`closing.Unanswered`): the message whole, then what running
    it again does; not the hint to check the bootstrap and the credentials, which had worked."""
    status, err = said(monkeypatch, capsys, Unanswered("the erasure's transaction: no answer from the broker within "
                                                       "60 s (given up: a transaction commits whole or not at all)"))
    assert status == 1 and err == ("commune-bus: Kafka: Unanswered: the erasure's transaction: no answer from the "
                                   "broker within 60 s (given up: a transaction commits whole or not at all) "
                                   f"({WRITE_UNANSWERED_HINT})"), err


@pytest.mark.parametrize("text", ["a" * 500, "Error: [" + ",".join(f"host{n}:9092" for n in range(60)) + "]",
                                  " " + "x" * 400, "word " + "y" * 400])
def test_a_message_without_a_space_near_the_limit_is_cut_at_the_limit(text: str) -> None:
    """No space within `WORD_CHARS` of the limit (a broker list without spaces, one long token): the first 300
    characters are said, not nothing (a review: 'a' * 500 said only "… (502 more characters)")."""
    from services.cli.said import CLIENT_MESSAGE_CHARS, clipped

    head, _, left = clipped(text).partition(" … (")
    assert head == text[:CLIENT_MESSAGE_CHARS] and left == f"{len(text) - CLIENT_MESSAGE_CHARS} more characters)"
