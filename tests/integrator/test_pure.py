"""Pure parts of the integrator's side: source registry, credentials, body splitting, dead-letter rules, idempotency."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from services.cli.deadletters import Filters, dead_letter, matches, redriven_headers, replayable, source_of
from services.gateway.batch import BodyError, check, family_of, split_body
from services.gateway.keys import Credential
from services.gateway.settings import GatewaySettings
from services.sources.registry import SourceRegistry, is_allowed, load_registry
from tests.integrator.conftest import REGISTRY
from tests.samples import canonical_dossier, portal_dossier, visit_completed, with_data

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(tmp_path: Path) -> SourceRegistry:
    (tmp_path / "s.yaml").write_text(REGISTRY, encoding="utf-8")
    return load_registry(tmp_path / "s.yaml")


def test_registry_allows_only_listed_family_and_communes(registry: SourceRegistry) -> None:
    """A source may publish its families for its communes or provinces; anything else is unauthorised_source."""
    assert is_allowed(registry, "/communes/02269/one-stop", Family.DOSSIER, "02269") is None
    assert is_allowed(registry, "/provinces/20/dossiers", "dossier", "05977") is None  # a Lạng Sơn commune
    denied = is_allowed(registry, "/provinces/20/dossiers", Family.DOSSIER, "02269")
    assert denied is not None and (denied.reason, denied.field) == (Reason.UNAUTHORISED_SOURCE, "commune")
    denied = is_allowed(registry, "/provinces/20/dossiers", Family.ANNOUNCEMENT, "05977")
    assert denied is not None and denied.field == "type"
    denied = is_allowed(registry, "/elsewhere", Family.DOSSIER, "02269")
    assert denied is not None and denied.field == "source"
    assert is_allowed(registry, "/communes/00691/loudspeakers", Family.ANNOUNCEMENT, "00691") is None  # prefix *


def test_committed_registry_file_loads() -> None:
    """infra/sources.yaml is a valid registry (a bad file would stop intake and the gateway)."""
    assert load_registry(ROOT / "infra/sources.yaml").sources


def test_bad_registry_file_is_refused(tmp_path: Path) -> None:
    """An unknown family in the registry is an error at load time, not an open door."""
    (tmp_path / "bad.yaml").write_text("sources: [{id: x, sources: [/a], families: [parcels]}]", encoding="utf-8")
    with pytest.raises(ValueError):
        load_registry(tmp_path / "bad.yaml")


CREDS = {"a": Credential(api_key=SecretStr("key-a-0123456789")),
         "b": Credential(hmac_key=SecretStr("hmac-b-0123456789"))}


def test_credentials_are_secret_in_settings_repr() -> None:
    """A credential's repr (what a log or traceback would show) hides the key."""
    assert "key-a" not in repr(CREDS["a"]) and "key-a" not in str(GatewaySettings().model_dump())


def test_body_forms_split_into_records() -> None:
    """One object, a JSON array and NDJSON (declared or not) all become one record per event."""
    one, two = canonical_dossier("1"), canonical_dossier("2")
    assert len(split_body(orjson.dumps(one))) == 1
    assert [orjson.loads(r)["id"] for r in split_body(orjson.dumps([one, two]))] == ["1", "2"]
    nd = orjson.dumps(one) + b"\n\n" + orjson.dumps(two) + b"\n"
    assert len(split_body(nd, "application/x-ndjson")) == 2 and len(split_body(nd, "application/json")) == 2
    for bad in (b"", b"{nope", b"[]"):
        with pytest.raises(BodyError):
            split_body(bad)
    with pytest.raises(BodyError):
        split_body(orjson.dumps([one] * 3), max_records=2)


def test_json_sequences_are_split_at_record_separators() -> None:
    """RFC 7464 (`application/json-seq`): a record separator before each record, line breaks optional."""
    one, two = canonical_dossier("1"), canonical_dossier("2")
    seq = b"\x1e" + orjson.dumps(one, option=orjson.OPT_INDENT_2) + b"\n\x1e" + orjson.dumps(two)
    assert [orjson.loads(r)["id"] for r in split_body(seq, "application/json-seq")] == ["1", "2"]


def test_one_pretty_printed_document_with_a_syntax_error_is_one_body_error() -> None:
    """Not read as NDJSON (it was: 'N of N records rejected', one per line of the document)."""
    broken = orjson.dumps(canonical_dossier("1"), option=orjson.OPT_INDENT_2).replace(b'"id"', b'"id" "x"', 1)
    with pytest.raises(BodyError, match="body is not JSON"):
        split_body(broken, "application/json")


def test_family_comes_from_type_then_defaults_to_dossier() -> None:
    """A mobile-team event is checked as mobile-team; a portal payload (no type) as a dossier."""
    assert family_of(orjson.dumps(visit_completed()), None) is Family.MOBILE_TEAM
    assert family_of(orjson.dumps(portal_dossier()), None) is Family.DOSSIER
    assert family_of(orjson.dumps(visit_completed()), Family.DOSSIER) is Family.DOSSIER


def test_check_reports_every_bad_record_by_index_and_field(registry: SourceRegistry) -> None:
    """Bad records are listed with their index and field path; portal records need the commune."""
    records = [orjson.dumps(canonical_dossier()), orjson.dumps(with_data(canonical_dossier(), status=9)),
               orjson.dumps(portal_dossier())]
    checked = check(records)
    assert [(e.index, e.field, e.reason) for e in checked.errors] == [
        (1, "data.ended_at", "missing_field"), (2, "commune-code", "missing_commune_header")]
    assert [e.id for _, e in checked.events] == ["evt-1"]
    caller = registry.by_id["lang-son-dossiers"]
    denied = check([orjson.dumps(canonical_dossier())], caller=caller)
    assert denied.unauthorised and denied.errors[0].field == "source"
    portal = check([orjson.dumps(portal_dossier())], commune="05977", caller=caller)
    assert not portal.errors and portal.events[0][1].source == "/provinces/20/dossiers"


def test_a_portal_record_without_its_commune_is_told_how_to_give_it_at_each_door() -> None:
    """The gateway's 422, `commune-bus validate` and the dead letter shared one message, "needs a `commune-code`
    record header": a Kafka record's header, which an HTTP client or a file cannot have; it names each door's way."""
    message = check([orjson.dumps(portal_dossier())]).errors[0].message
    assert all(way in message for way in ("X-Commune-Code", "?commune=", "--commune", "`commune-code` record header"))
    assert len(message) <= 300  # dlq.message's bound


def _letter(reason: Reason, headers: list[tuple[str, bytes]], value: bytes, at: str = "2025-11-03T01:00:00+00:00"):
    ctx = DeadLetterContext(reason=reason, field="f", message="m", source_topic="commune.raw.dossier",
                            source_partition=2, source_offset=7, rejected_at=at)
    return dead_letter(3, 41, b"02269", value, [*headers, *ctx.headers()])


def test_dead_letter_filters_by_reason_source_and_time() -> None:
    """Filters combine: reason set, exact or prefix source, rejection time window (naive = Vietnam time)."""
    letter = _letter(Reason.MISSING_COMMUNE_HEADER, [("source", b"/communes/02269/one-stop")], b"{}")
    assert matches(letter, Filters())
    assert matches(letter, Filters(reasons=frozenset({Reason.MISSING_COMMUNE_HEADER}), source="/communes/*"))
    assert not matches(letter, Filters(reasons=frozenset({Reason.NOT_JSON})))
    assert not matches(letter, Filters(source="/communes/02269"))
    assert matches(letter, Filters(since=datetime(2025, 11, 3, 7, 0), until=datetime(2025, 11, 3, 9, 0)))
    assert not matches(letter, Filters(since=datetime(2025, 11, 3, 8, 1)))


def test_duplicates_are_replayed_only_when_asked_for_by_reason() -> None:
    """A bulk replay leaves duplicate_event letters alone (past the de-duplication and ledger windows they would be
    published and notified again); --reason duplicate_event replays them; other reasons are replayable as ever."""
    duplicate = _letter(Reason.DUPLICATE_EVENT, [], b"{}")
    fixable = _letter(Reason.MISSING_COMMUNE_HEADER, [], b"{}")
    assert not replayable(duplicate, Filters()) and replayable(fixable, Filters())
    assert replayable(duplicate, Filters(reasons=frozenset({Reason.DUPLICATE_EVENT})))


def test_source_is_read_from_ce_header_source_header_or_json() -> None:
    """Source identity: ce_source, then the portal `source` header, then structured JSON's `source`."""
    assert source_of([("ce_source", b"/a")], b"{}") == "/a"
    assert source_of([("source", b"/b")], b"{}") == "/b"
    assert source_of([], json.dumps({"source": "/c"}).encode()) == "/c"
    assert source_of([], b"\xff") is None


@pytest.mark.parametrize("header", [b"02269", b" 2269 ", b"2269"])
def test_a_portal_record_without_a_source_header_has_the_source_intake_gives_it(header: bytes) -> None:
    """A portal-shape dead letter without a `source` header (an unauthorised portal sync, an impossible date) is
    listed under its commune's portal sync, the source intake gives the record when it accepts it: the runbooks'
    `dlq list --source '/communes/<code>/*'` for a silent commune missed it. Without a commune header it has none."""
    from schemas.wire import Headers
    from services.intake.normalise import normalise
    from services.intake.outcome import Accepted
    value = json.dumps(portal_dossier()).encode()
    headers: Headers = [("commune-code", header)]
    accepted = normalise(Family.DOSSIER, value, headers)
    assert isinstance(accepted, Accepted) and accepted.event.source == "/communes/02269/portal-sync"
    assert source_of(headers, value) == accepted.event.source
    letter = _letter(Reason.IMPOSSIBLE_DATES, list(headers), value)
    assert matches(letter, Filters(source="/communes/02269/*"))
    assert not matches(letter, Filters(source="/communes/02270/*"))
    assert source_of([("commune-code", header), ("source", b"/provinces/08/sync")], value) == "/provinces/08/sync"
    assert source_of([], value) is None
    assert source_of(headers, json.dumps({"MaHoSo": "x", "specversion": "1.0"}).encode()) is None


def test_redriven_record_drops_dlq_headers_and_marks_its_origin() -> None:
    """Re-driven headers: originals (with fixes applied), no dlq.* except dlq.replayed=<dlq partition:offset>, and
    the latest the original can have been written, its rejection time (ADR 0042)."""
    letter = _letter(Reason.MISSING_COMMUNE_HEADER, [("source", b"/x"), ("commune-code", b"99999")], b"{}")
    headers = redriven_headers(letter, {"commune-code": "02269"})
    assert headers == [("source", b"/x"), ("commune-code", b"02269"), ("dlq.replayed", b"3:41"),
                       ("intake.written-at", b"1762131600000")]
