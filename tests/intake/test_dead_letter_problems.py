"""A dead letter names every problem of its record (`dlq.problems`), as the gateway's 4xx does: an integrator producing
straight to a raw topic fixed one field, sent the record again, and met the next. Bounded (`MAX_PROBLEMS` + 1 entries,
each cut), no value of the record in it, read by the CLI; a letter without it (one problem, or written before) reads
as before."""

from __future__ import annotations

import io

import orjson
import pytest
from aiokafka import ConsumerRecord
from rich.console import Console

from schemas.deadletter import (
    FIELD_CHARS,
    MAX_PROBLEMS,
    MESSAGE_CHARS,
    DeadLetterContext,
    Header,
    Reason,
    Rejection,
    problems_header,
)
from schemas.events import FAMILY_OF_TYPE, Family
from services.cli.deadletters import DeadLetter
from services.cli.render import dead_letter_table
from services.cli.tracer import Tracer
from services.intake import validate
from services.intake.decide import Decider, allow_all
from services.intake.dedup import SeenIds
from tests.samples import HDR, canonical_dossier, dumps, portal_dossier, storm_scheduled, visit_completed, with_data

pytestmark = pytest.mark.unit
NAME, CCCD, PHONE, EMAIL = "Nguyễn Thị Lan", "008123456789", "0912345678", "lan@example.vn"
PERSONAL = (NAME, CCCD, PHONE, EMAIL, "Nguy", "0912", "00812")


def personal_record() -> bytes:
    """A portal record whose applicant's name, CCCD, phone and e-mail are each bad, and hold the values."""
    return dumps(portal_dossier("TL-PII-0002", ChuHoSo=NAME * 20, SoGiayToChuHoSo=f"{CCCD}\x00",
                                SoDienThoaiChuHoSo=PHONE * 3, EmailChuHoSo=f"{EMAIL}\r\nBcc: {EMAIL}"))


def decided(value: bytes, headers: list[tuple[str, bytes]] | None = None,
            family: Family = Family.DOSSIER) -> DeadLetterContext:
    decision = Decider(family, "t1.commune.raw.dossier", 4, SeenIds(), allow_all, 1024 * 1024,
                       "2025-11-03T04:00:00+00:00").decide(value, headers or [], offset=9)
    assert isinstance(decision, DeadLetterContext), decision
    return decision


def listed(context: DeadLetterContext) -> list[dict[str, str]]:
    [value] = [v for k, v in context.headers() if k == Header.PROBLEMS]
    entries: list[dict[str, str]] = orjson.loads(value)
    return entries


def test_a_record_with_three_bad_fields_is_one_dead_letter_naming_all_three() -> None:
    """Three bad fields: `dlq.problems` lists the three, the first the one of `dlq.reason`/`field`/`message`."""
    context = decided(dumps(with_data(canonical_dossier(), paid_online="maybe", digitised="perhaps", status=99)))
    entries = listed(context)
    assert [(e["reason"], e["field"]) for e in entries] == [
        ("unknown_status", "data.status"), ("invalid_field", "data.paid_online"), ("invalid_field", "data.digitised")]
    assert entries[0] == {"reason": context.reason.value, "field": context.field, "message": context.message}
    assert DeadLetterContext.from_headers(context.headers()) == context


def test_a_record_with_one_problem_has_no_problems_header_and_reads_as_before() -> None:
    """One problem: the three headers say it all (no `dlq.problems`); a reader gets it as the one problem."""
    context = decided(dumps(with_data(canonical_dossier(), status=99)))
    assert Header.PROBLEMS not in dict(context.headers())
    read = DeadLetterContext.from_headers(context.headers())
    assert read.problems == () and read.all_problems() == (Rejection(reason=Reason.UNKNOWN_STATUS,
                                                                      field="data.status", message=context.message),)


def test_past_max_problems_the_header_lists_max_problems_and_one_entry_counting_the_rest() -> None:
    """A hundred unknown members: 20 listed, the 21st counting the 80 others."""
    bad = canonical_dossier()
    bad["data"] = {**bad["data"], **{f"extra_{i}": i for i in range(100)}}
    entries = listed(decided(dumps(bad)))
    assert len(entries) == MAX_PROBLEMS + 1
    assert [e["field"] for e in entries[:MAX_PROBLEMS]] == [f"data.extra_{i}" for i in range(MAX_PROBLEMS)]
    assert entries[-1]["field"] == "(record)" and entries[-1]["message"].startswith("80 more problems")


def test_no_value_of_the_record_is_in_any_header_of_its_dead_letter() -> None:
    """Name, CCCD, phone and e-mail each bad (too long, a CR/LF): every field named, none of the values anywhere in
    the dead letter's `dlq.*` headers, CR/LF included."""
    context = decided(personal_record(), HDR)
    fields = {e["field"] for e in listed(context)}
    assert fields == {"ChuHoSo", "SoGiayToChuHoSo", "SoDienThoaiChuHoSo", "EmailChuHoSo"}
    text = b"".join(k.encode() + v for k, v in context.headers()).decode()
    assert [p for p in PERSONAL if p in text] == [] and "\r" not in text and "Bcc" not in text


def test_each_field_and_message_is_cut_and_the_entries_bounded() -> None:
    """However long a problem's field or message, or however many problems a context holds, the header is bounded."""
    long = Rejection(reason=Reason.INVALID_FIELD, field="f" * 5000, message="m" * 5000)
    entries = orjson.loads(problems_header([long] * 50))
    assert len(entries) == MAX_PROBLEMS + 1
    assert {(len(e["field"]), len(e["message"])) for e in entries} == {(FIELD_CHARS, MESSAGE_CHARS)}


def letter_headers(**problems: bytes) -> list[tuple[str, bytes | None]]:
    base = DeadLetterContext(reason=Reason.INVALID_FIELD, field="data.a", message="data.a: bad",
                             source_topic="commune.raw.dossier", source_partition=0, source_offset=3,
                             rejected_at="2026-12-06T00:00:00+00:00")
    return [*base.headers(), *((Header.PROBLEMS.value, v) for v in problems.values())]


def test_a_problems_header_that_is_not_intakes_is_passed_over() -> None:
    """Malformed, or carried by the original record before intake's own block (a producer's): none read, never an
    error hiding the letter; an entry of a reason this CLI does not know is left out, the others kept."""
    forged = orjson.dumps([{"reason": "invalid_field", "field": "x", "message": "forged"}] * 2)
    before = [(Header.PROBLEMS.value, forged), *letter_headers()]
    assert DeadLetterContext.from_headers(before).problems == ()
    for junk in (b"", b"{", b'{"reason": "x"}', b"[1, 2]", b"\xff"):
        assert DeadLetterContext.from_headers(letter_headers(p=junk)).problems == ()
    mixed = orjson.dumps([{"reason": "invalid_field", "field": "data.a", "message": "data.a: bad"},
                          {"reason": "from_the_future", "field": "b", "message": "b"},
                          {"reason": "missing_field", "field": "data.c", "message": "data.c: required"}])
    read = DeadLetterContext.from_headers(letter_headers(p=mixed)).problems
    assert [p.field for p in read] == ["data.a", "data.c"]


def test_the_first_problem_read_is_always_dlq_reason_field_and_message() -> None:
    """What a reader lists first is the letter's reason, field and message, whatever `dlq.problems` says: one entry
    alone, or a first that disagrees with `dlq.reason` (forged: `dlq list --reason` filters by `dlq.reason`), or an
    entry longer than intake cuts, is not intake's (review: each was listed as it was)."""
    one = orjson.dumps([{"reason": "unknown_commune", "field": "forged", "message": "forged"}])
    read = DeadLetterContext.from_headers(letter_headers(p=one))
    assert read.problems == () and [p.field for p in read.all_problems()] == ["data.a"]
    other = orjson.dumps([{"reason": "unknown_commune", "field": "forged", "message": "forged"},
                          {"reason": "missing_field", "field": "data.c", "message": "data.c: required"}])
    read = DeadLetterContext.from_headers(letter_headers(p=other))
    assert [(p.reason, p.field) for p in read.all_problems()] == [
        (Reason.INVALID_FIELD, "data.a"), (Reason.MISSING_FIELD, "data.c")]
    uncut = orjson.dumps([{"reason": "invalid_field", "field": "data.a", "message": "data.a: bad"},
                          {"reason": "missing_field", "field": "f" * 10_000, "message": "m" * 10_000}] * 2)
    read = DeadLetterContext.from_headers(letter_headers(p=uncut))
    assert {len(p.field) for p in read.all_problems()} == {len("data.a")}


def test_a_letter_intake_left_something_out_of_says_so_in_its_first_problem() -> None:
    """A dead letter over the topic's limit is written without the record's headers or the record, and its message
    says so: `dlq.problems` and a reader's first problem say it too (they gave the message without the note)."""
    context = decided(dumps(with_data(canonical_dossier(), paid_online="maybe", status=99)))
    noted = validate._noted(context, f"{context.message}; the record left out of this dead letter")
    assert listed(noted)[0]["message"] == noted.message
    assert DeadLetterContext.from_headers(noted.headers()).all_problems()[0].message == noted.message


def shown(context: DeadLetterContext) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(dead_letter_table([DeadLetter(0, 7, None, None, [], context, None, "0" * 32)], set()))
    return console.export_text()


def test_dlq_list_shows_each_problems_reason_and_field_and_an_old_letter_as_before() -> None:
    context = decided(dumps(with_data(canonical_dossier(), paid_online="maybe", digitised="perhaps", status=99)))
    """`dlq list`: a line a problem, its reason and field side by side (wide enough: no cell folded)."""
    text = shown(DeadLetterContext.from_headers(context.headers()))
    cells = [[cell.strip() for cell in line.split("│")[2:4]] for line in text.splitlines() if line.startswith("│")]
    assert cells == [["unknown_status", "data.status"], ["invalid_field", "data.paid_online"],
                     ["invalid_field", "data.digitised"]], text
    old = DeadLetterContext.from_headers([(k, v) for k, v in context.headers() if k != Header.PROBLEMS])
    text = shown(old)
    assert "data.status" in text and "data.paid_online" not in text


def test_a_trace_names_every_problem_of_the_dead_letter() -> None:
    context = decided(dumps(with_data(canonical_dossier("evt-9"), paid_online="maybe", status=99)))
    rec: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "commune.dlq.intake", 0, 5, 1_764_576_000_000, 0, None, None, None, 0, 0,
        [(k, v) for k, v in context.model_copy(update={"lookup_id": "evt-9"}).headers()])
    tracer = Tracer("evt-9")
    tracer.intake_dead_letter(rec)
    [step] = tracer.steps
    assert "unknown_status (data.status)" in step.what and "invalid_field (data.paid_online)" in step.what


@pytest.mark.parametrize("shape", [str, list, dict])
@pytest.mark.parametrize("sample", ["canonical", "portal", "visit", "storm"])
def test_no_member_set_to_personal_data_is_echoed_by_any_problem(sample: str, shape: type) -> None:
    """Every member of the envelope, of `data` and of the applicant set to a name and a phone number (as text, in a
    list, in an object; too long for the applicant): many problems, the value in none of the dead letter's headers."""
    value = NAME + PHONE
    bad: object = {str: value, list: [value], dict: {"x": value}}[shape]
    base = {"canonical": canonical_dossier(), "portal": portal_dossier(), "visit": visit_completed(),
            "storm": storm_scheduled()}[sample]
    family = FAMILY_OF_TYPE[base.get("type", "vn.communebus.dossier.status-changed.v1")]
    records = [({k: bad for k in base}, "type" not in base)]  # an envelope's first bad member: its `type`
    if "data" in base:
        records.append(({**base, "data": {k: bad for k in base["data"]}}, True))
    if sample == "canonical":
        applicant = {k: value * 30 for k in ("name", "id_number", "phone", "email", "zalo_user_id", "address")}
        records.append(({**base, "data": {**base["data"], "applicant": applicant}}, True))
    for record, several in records:
        context = decided(dumps(record), HDR if sample == "portal" else [], family)
        assert len(context.problems) > 1 or not several, context  # all listed
        text = b"".join(k.encode() + v for k, v in context.headers()).decode()
        assert [p for p in PERSONAL if p in text] == [], text
