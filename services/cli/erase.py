"""`commune-bus erase --cccd ...`: erase an applicant (crypto-shredding, ADR 0015); `commune-bus keys secret|rewrap`.

Every copy of the applicant's personal data outside the raw topics is sealed under their data
keys; destroying the keys makes all of them unreadable at once. Only the pepper is needed
(`PRIVACY_PEPPER` / `PRIVACY_PEPPER_FILE`): the CCCD becomes the pseudonymous subject id and
is never printed, logged or written.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import sys
import warnings
from collections.abc import Iterable
from typing import Annotated, NoReturn

import typer

from schemas.personal import ErasureAudit
from services.cli.errors import TopicMissing
from services.cli.options import DEFAULT_BOOTSTRAP, Bootstrap, Namespace, connection
from services.cli.plain import markup
from services.cli.render import console, err_console
from services.common.transactions import SendFailed
from services.privacy import crypto, required_topics
from services.privacy import erase as erasure
from services.privacy.crypto import PrivacyError
from services.privacy.erase import erase_applicant
from services.privacy.rewrap import rewrap_keys
from services.privacy.settings import PrivacySettings, generate_secret, pepper_of

keys_app = typer.Typer(no_args_is_help=True, help="Secrets of personal-data protection")
MAX_REQUESTER_CHARS = ErasureAudit.model_fields["requested_by"].metadata[-1].max_length
REQUESTER = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_REQUESTER_CHARS}}}")
KINDS = ("cccd", "phone", "email", "zalo", "subject")


def identifiers_from(lines: Iterable[str]) -> list[tuple[str, str]]:
    """`kind=value` lines (kinds: cccd, phone, email, zalo, subject; blank lines skipped). Raises ValueError naming
    the line by its number, never by its text."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        kind, equals, value = line.strip().partition("=")
        if not equals or kind.strip() not in KINDS or not value.strip():
            raise ValueError(f"line {number} of stdin is not kind=value with kind {', '.join(KINDS)}")
        out.append((kind.strip(), value.strip()))
    if not out:
        raise ValueError("stdin holds no identifier")
    return out


def _can_ask() -> bool:
    """Whether there is a terminal to ask for the CCCD on: getpass asks on /dev/tty, else warns and reads stdin."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def _no_terminal() -> NoReturn:
    err_console.print("erase: no identifier given, and no terminal to ask for the CCCD on: give kind=value lines "
                      "on stdin with --stdin (e.g. cccd=...), or an option such as --cccd", soft_wrap=True)
    raise typer.Exit(2)


def _asked_cccd() -> str:
    """The CCCD typed on the terminal, unechoed. Without a terminal to ask on (`erase < /dev/null`, a job), or none
    typed (Ctrl-D): one line and exit 2; getpass warned that the input may be echoed, read stdin instead, and an
    empty one ended in "Aborted." (CLI trial)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)  # raised before it falls back to stdin
            return getpass.getpass("CCCD: ")
    except getpass.GetPassWarning:
        _no_terminal()
    except EOFError:
        err_console.print("erase: no CCCD typed: nothing was erased")
    raise typer.Exit(2)


def _usable(identifiers: list[tuple[str, str]]) -> None:
    if unusable := [kind for kind, value in identifiers if not crypto.identifies(kind, value)]:
        err_console.print(f"erase: not an identifier of one person: {', '.join(unusable)} (the value is not shown)")
        raise typer.Exit(2)


def erase(cccd: Annotated[str | None, typer.Option(
              "--cccd", help="The applicant's CCCD number (asked for, unechoed, if no identifier is given)")] = None,
          phone: Annotated[str | None, typer.Option(
              "--phone", help="A phone their dossiers carried (those sent without a CCCD are sealed under it)")] = None,
          email: Annotated[str | None, typer.Option("--email", help="Likewise, an e-mail address")] = None,
          zalo: Annotated[str | None, typer.Option("--zalo", help="Likewise, a Zalo user id")] = None,
          subject: Annotated[str | None, typer.Option(
              "--subject", help="A pseudonymous subject (a-..., d-... or r-...) as `trace` shows it on a dossier's "
              "canonical events: an applicant whose dossier named no CCCD, phone, e-mail or Zalo id (a name and an "
              "address only) is sealed under their dossier's subject (d-...; before 2026-12-03 a random r-... per "
              "event), which only this reaches")] = None,
          requested_by: Annotated[str | None, typer.Option(
              "--requested-by", help="Who asked (operator account); default: the OS user")] = None,
          stdin: Annotated[bool, typer.Option(
              "--stdin", help="Read the identifiers from stdin, one kind=value a line (cccd, phone, email, zalo, "
              "subject): "
              "unlike options, they stay out of `ps` and the shell's history")] = False,
          bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "") -> None:
    """Erase an applicant: destroy every data key of theirs and write an audit record (nothing personal is printed).

    Give every identifier the citizen used: a dossier sent without a CCCD is sealed under its phone, e-mail or
    Zalo id, which an erasure by the CCCD alone does not reach, and one with none of those under a subject of its
    own (`trace` shows it: `--subject`). Each is erased in turn, with its own audit record.
    """
    who = requested_by or f"os:{getpass.getuser()}"
    if not REQUESTER.fullmatch(who):  # it names the requester in the audit record: refused before anything is done
        err_console.print(f"erase: --requested-by is 1 to {MAX_REQUESTER_CHARS} characters, without control "
                          "characters (it names who asked in the audit record)")
        raise typer.Exit(2)
    given = [(kind, v) for kind, v in (("cccd", cccd), ("phone", phone), ("email", email), ("zalo", zalo),
                                       ("subject", subject)) if v]
    if stdin and given:
        err_console.print("erase: give the identifiers on stdin or as options, not both")
        raise typer.Exit(2)
    if stdin:
        try:
            identifiers = identifiers_from(sys.stdin)
        except ValueError as exc:
            err_console.print(f"erase: {markup(exc)} (the text is not shown)")
            raise typer.Exit(2) from None
    elif given:
        err_console.print("erase: warning: identifiers given as options are visible to every local user (ps) and "
                          "kept in the shell's history; --stdin reads them unseen")
        identifiers = given
    elif not _can_ask():
        _no_terminal()
    else:  # asked for once the principal is known to have the rights: nobody types a CCCD for nothing
        identifiers = []
    try:
        pepper = pepper_of(PrivacySettings())
    except PrivacyError as exc:
        err_console.print(f"erase: {markup(exc)}")
        raise typer.Exit(2) from None
    _usable(identifiers)
    conn = connection(bootstrap)
    if refused := asyncio.run(erasure.forbidden(conn, namespace)):  # before: "the broker refused to create" them
        err_console.print(f"erase: this principal may not describe {markup(', '.join(refused))}: an erasure reads and "
                          "writes the key topics, the privacy audit and the erasure notices, which only the operator "
                          "(and the admin) may; nothing was erased. On the local secure broker: set -a; . "
                          "\"$(infra/kafka/kafka.sh env operator)\"; set +a", soft_wrap=True)
        raise typer.Exit(1)
    try:  # a mistyped --namespace or --bootstrap: its topics named missing before anything is asked (it made them)
        asyncio.run(required_topics.require(conn, [t.name for t in erasure.erasure_topics(namespace)]))
    except required_topics.TopicsMissing as exc:
        raise TopicMissing(*exc.topics) from None
    if not identifiers:
        identifiers = [("cccd", _asked_cccd())]
        _usable(identifiers)
    done: list[ErasureAudit] = []

    def erased(kind: str, audit: ErasureAudit) -> None:  # as each commits: a later failure does not hide it
        console.print(f"erased subject {markup(audit.subject)} (by {kind}): {audit.keys_destroyed} keys destroyed "
                      f"(audit {markup(audit.erasure_id)}, requested by {markup(audit.requested_by)})", soft_wrap=True)
        done.append(audit)

    try:
        asyncio.run(erase_applicant(conn, namespace, pepper, identifiers, requested_by=who, committed=erased))
    except SendFailed as exc:  # the broker refused a tombstone or the audit record: that transaction was aborted
        err_console.print(f"erase: not done ({markup(exc)}){_standing(done)}; run it again once the cause is fixed")
        raise typer.Exit(1) from None
    except ValueError as exc:  # refused before any key was destroyed (the message holds no value)
        err_console.print(f"erase: {markup(exc)}")
        raise typer.Exit(2) from None
    except required_topics.TopicsMissing as exc:  # deleted since the check above
        raise TopicMissing(*exc.topics) from None
    except BaseException:  # a broker gone after a commit (the clean-up's read), an interrupt: said, then raised
        if done:
            err_console.print(f"erase: stopped{_standing(done)}; running it again is safe", soft_wrap=True)
        raise


def _standing(done: list[ErasureAudit]) -> str:
    """What stands of an erasure that failed part way: the erasures committed (printed above)."""
    return f"; the erasures printed above ({len(done)}) are done" if done else ""



@keys_app.command("secret")
def secret() -> None:
    """Print a fresh 32-byte secret (base64url) for PRIVACY_KEK or PRIVACY_PEPPER."""
    typer.echo(generate_secret())


@keys_app.command("rewrap")
def rewrap(dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what it would do; write nothing")] = False,
           bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, namespace: Namespace = "") -> None:
    """Re-wrap every live data key under the current KEK (PRIVACY_KEK, PRIVACY_KEK_ID) from the old ones
    (PRIVACY_OLD_KEKS), so that an old KEK can be retired (runbooks: rotating the key-encryption key).

    Erased and expired keys are never written again; a key an erasure reaches while this runs is tombstoned again.
    Run as the operator (KAFKA_*). Prints counts per key topic, never a subject. Exit 1 if a key record could not
    be read (a KEK not given, or damage): give its KEK in PRIVACY_OLD_KEKS and run it again.
    """
    try:
        settings = PrivacySettings()
        keks = settings.keks()
        report = asyncio.run(rewrap_keys(connection(bootstrap), namespace, keks, settings.kek_id, dry_run=dry_run))
    except PrivacyError as exc:
        err_console.print(f"keys rewrap: {markup(exc)}")
        raise typer.Exit(2) from None
    except required_topics.TopicsMissing as exc:  # a mistyped --namespace: said, not made (a dry run made them)
        raise TopicMissing(*exc.topics) from None
    except SendFailed as exc:  # that transaction was aborted; the ones before it stand (each record is idempotent)
        err_console.print(f"keys rewrap: not done ({markup(exc)}); run it again once the cause is fixed")
        raise typer.Exit(1) from None
    console.print(report.summary(settings.kek_id, dry_run=dry_run), soft_wrap=True, markup=False)
    if unreadable := report.plan.count("unreadable"):
        err_console.print(f"keys rewrap: {unreadable} key records not readable (a KEK not in PRIVACY_OLD_KEKS, or "
                          "damaged): left as they are; their old KEK must not be removed yet", soft_wrap=True)
        raise typer.Exit(1)
