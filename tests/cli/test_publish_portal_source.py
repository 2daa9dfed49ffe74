"""`publish` of portal-shape dossiers to a source's own topic names their source as intake will judge it: without
`--source` intake takes them as the commune's portal sync, which the entry may not own, and dead-letters every one
as unauthorised_source; the command exited 0 all the same (CLI trial). Refused before anything is sent, exit 2
(Kafka replaced by in-memory fakes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from services.cli import kafka_io
from services.cli.main import app
from tests.samples import canonical_dossier, portal_dossier

pytestmark = pytest.mark.unit
ONE_STOP = "/communes/02269/one-stop"
"""The one source of the registry entry `thuong-lam-one-stop` (infra/sources.yaml)."""


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, kafka_io.Record]]:
    """What `publish` sent, topic by topic: the Kafka shell faked, every topic there."""
    out: list[tuple[str, kafka_io.Record]] = []

    async def visible(*_: Any) -> None: ...

    async def publish(_conn: Any, topic: str, records: list[kafka_io.Record], progress: Any) -> int:
        out.extend((topic, r) for r in records)
        progress(len(records))
        return len(records)

    monkeypatch.setattr(kafka_io, "visible", visible)
    monkeypatch.setattr(kafka_io, "publish", publish)
    return out


def publish(tmp_path: Path, records: list[dict[str, Any]], *args: str) -> Result:
    path = tmp_path / "records.ndjson"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return CliRunner().invoke(app, ["publish", str(path), "--family", "dossier", "--commune", "02269", *args],
                              env={"COLUMNS": "400"})


def test_portal_records_without_source_on_a_sources_topic_are_refused(tmp_path: Path,
                                                                     sent: list[Any]) -> None:
    """As `thuong-lam-one-stop` (whose one source is /communes/02269/one-stop): exit 2, one line saying --source is
    needed and which sources would do; nothing sent."""
    result = publish(tmp_path, [canonical_dossier("C-1"), portal_dossier("P-1")], "--entry", "thuong-lam-one-stop")
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"publish: portal-shape records need --source, one of thuong-lam-one-stop's sources in "
                           f"the registry ({ONE_STOP}): without it intake takes them as the commune's portal sync, "
                           "/communes/02269/portal-sync, which is not one of them, and dead-letters them as "
                           "unauthorised_source; nothing was published"), said
    assert sent == []


def test_a_source_not_the_entrys_is_refused_unrepeated(tmp_path: Path, sent: list[Any]) -> None:
    """A --source the entry does not own: exit 2, the entry's sources named, the value given not repeated."""
    result = publish(tmp_path, [portal_dossier("P-2")], "--entry", "thuong-lam-one-stop", "--source", "/typo/008123")
    assert result.exit_code == 2 and "--source is not one of thuong-lam-one-stop's sources" in result.output
    assert "008123" not in result.output and sent == []


@pytest.mark.parametrize("args, topic", [
    (["--entry", "thuong-lam-one-stop", "--source", ONE_STOP], "commune.raw.dossier.src.thuong-lam-one-stop"),
    (["--entry", "simulator"], "commune.raw.dossier.src.simulator"),  # it owns /communes/*: the portal sync too
    ([], "commune.raw.dossier"),  # the shared topic: the registry's rule, any entry's source
])
def test_portal_records_intake_will_take_are_published(tmp_path: Path, sent: list[Any], args: list[str],
                                                       topic: str) -> None:
    """An owned --source, an entry owning the commune's portal sync, the shared topic: sent as before."""
    result = publish(tmp_path, [portal_dossier("P-3")], *args)
    assert result.exit_code == 0, result.output
    assert [t for t, _ in sent] == [topic]


@pytest.mark.parametrize(("entry_id", "commune", "source"), [
    *(("thuong-lam-one-stop", c, s) for c in ("02269", "2269", "00004") for s in (None, ONE_STOP, "/communes/02269/x")),
    *(("lang-son-dossiers", c, s) for c in ("06040", "02269") for s in (None, "/provinces/20/dossiers")),
])
def test_the_refusal_is_intakes_rule(entry_id: str, commune: str, source: str | None) -> None:
    """What the command refuses is what intake dead-letters on the entry's own topic, and only that: the record's
    source as intake reads it (the portal sync without a `source` header), and its commune, which the entry must
    cover (a review: Lạng Sơn's entry publishing for Thượng Lâm passed the command and was dead-lettered)."""
    from schemas.events import Family
    from services.cli.portal_records import registry_entry, unowned_source
    from services.common.topics_cli import DEFAULT_SOURCES
    from services.intake.normalise import normalise
    from services.intake.outcome import Accepted
    from services.sources.topics import entry_policy

    entry = registry_entry(DEFAULT_SOURCES, entry_id)
    assert entry is not None
    headers = [("commune-code", commune.encode()), *([("source", source.encode())] if source else [])]
    outcome = normalise(Family.DOSSIER, orjson.dumps(portal_dossier("P-4")), headers)
    assert isinstance(outcome, Accepted)
    denied = entry_policy(entry, outcome.event.source, Family.DOSSIER, outcome.event.commune)
    assert (unowned_source(entry, commune, source) is None) is (denied is None)


def test_a_commune_the_entry_does_not_cover_is_refused(tmp_path: Path, sent: list[Any]) -> None:
    """Lạng Sơn's provincial system publishing for a commune of Tuyên Quang, with its own source: exit 2, nothing
    sent (it exited 0 and intake dead-lettered the record as unauthorised_source)."""
    result = publish(tmp_path, [portal_dossier("P-7")], "--entry", "lang-son-dossiers", "--source",
                     "/provinces/20/dossiers")
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said == ("publish: intake would dead-letter the records as unauthorised_source: lang-son-dossiers may not "
                    "publish for commune 02269; nothing was published")
    assert sent == []


def test_an_empty_source_is_no_source_header(tmp_path: Path, sent: list[Any]) -> None:
    """`--source ""` sends no header, so intake takes the commune's portal sync, which `simulator` owns: published
    (it was refused as a source the entry does not own)."""
    result = publish(tmp_path, [portal_dossier("P-8")], "--entry", "simulator", "--source", "")
    assert result.exit_code == 0, result.output
    assert [headers for _, (_, _, headers) in sent] == [[("commune-code", b"02269")]]


NO_COMMUNE = ("portal-shape records need --commune, the commune's code (their `commune-code` header): without it "
              "intake dead-letters them as missing_commune_header; nothing was published")


@pytest.mark.parametrize("commune, said", [
    (None, NO_COMMUNE),
    ("", NO_COMMUNE),  # no header, as intake reads it (it was refused as unknown_commune)
    ("99999", "--commune is not a commune code of the official list: intake would dead-letter the records as "
              "unknown_commune; nothing was published"),
])
@pytest.mark.parametrize("args", [[], ["--entry", "simulator"]])
def test_portal_records_without_a_known_commune_are_refused_on_any_topic(tmp_path: Path, sent: list[Any],
                                                                         commune: str | None, said: str,
                                                                         args: list[str]) -> None:
    """Portal-shape dossiers carry their commune only in the header: without --commune (or with a code not on the
    official list) intake dead-letters every one, on the shared topic as on a source's own. Exit 2, nothing sent, the
    code given not repeated; the command exited 0 before (CLI trial, left alone then)."""
    path = tmp_path / "records.ndjson"
    path.write_bytes(orjson.dumps(portal_dossier("P-5")) + b"\n")
    given = ["--commune", commune] if commune is not None else []
    result = CliRunner().invoke(app, ["publish", str(path), "--family", "dossier", *given, *args],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == f"publish: {said}"
    assert sent == []


@pytest.mark.parametrize("commune", [None, "99999", "2269", "02269"])
def test_the_commune_refusal_is_intakes_rule(commune: str | None) -> None:
    """Refused exactly when intake dead-letters the record for its commune header (read as intake reads it)."""
    from schemas.deadletter import Reason
    from schemas.events import Family
    from services.cli.portal_records import commune_problem
    from services.intake.normalise import normalise
    from services.intake.outcome import Accepted, Rejected

    headers = [("commune-code", commune.encode())] if commune else []
    outcome = normalise(Family.DOSSIER, orjson.dumps(portal_dossier("P-6")), headers)
    for_commune = isinstance(outcome, Rejected) and outcome.rejection.reason in (Reason.MISSING_COMMUNE_HEADER,
                                                                       Reason.UNKNOWN_COMMUNE)
    assert (commune_problem(commune) is not None) is for_commune is (not isinstance(outcome, Accepted))


def test_a_family_the_entry_does_not_publish_is_refused_before_anything_is_sent(tmp_path: Path,
                                                                               sent: list[Any]) -> None:
    """A source's `publish --family mobile-team` when its registry entry lists dossiers only: exit 2 naming the
    entry's families, nothing sent. It was refused by the broker (no such topic for it) with the hint to use the
    admin's credentials (walkthrough, 2026-12-05)."""
    path = tmp_path / "visit.ndjson"
    path.write_bytes(orjson.dumps(canonical_dossier()) + b"\n")  # its shape does not matter: refused before reading
    result = CliRunner().invoke(app, ["publish", str(path), "--family", "mobile-team", "--entry",
                                      "thuong-lam-one-stop"], env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said == ("publish: the registry entry thuong-lam-one-stop publishes dossier only, not mobile-team: it has "
                    "no mobile-team topic (ask the operators to add the family to the entry); nothing was published")
    assert sent == []
