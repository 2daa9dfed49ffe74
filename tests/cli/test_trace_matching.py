"""`trace` (CLI and GET /v1/trace): a raw record is found by its event id, dossier code or trace id, exactly, never
because it contains the query (a CCCD, a phone, "0"); a trace keeps at most `MAX_STEPS` steps and says so; the
gateway runs the scan off its event loop (pure, and in process)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from fastapi.testclient import TestClient

from schemas import trace
from services.cli.trace import Timeline
from services.cli.tracer import MAX_STEPS, Step, Tracer
from services.gateway import operators
from tests.gateway.asgi import app
from tests.samples import canonical_dossier, portal_dossier

pytestmark = pytest.mark.unit
PARENT = trace.derive("/communes/02269/one-stop", "evt-9")


def raw(value: dict[str, Any], offset: int = 0, headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord[
        bytes, bytes]:
    body = orjson.dumps(value)
    return ConsumerRecord("commune.raw.dossier", 0, offset, 1_764_000_000_000 + offset, 0, b"02269", body, None, 5,
                          len(body), headers or [("commune-code", b"02269"), ("source", b"/communes/02269/one-stop")])


RECORDS = [raw(portal_dossier(f"TL-251101-{i:04d}", SoGiayToChuHoSo=f"00812345678{i}"), i) for i in range(5)] + [
    raw({**canonical_dossier("evt-9", dossier_code="TL-CE-0009"), "traceparent": PARENT}, 5),
    raw({}, 6, [("ce_id", b"evt-b"), ("ce_subject", b"TL-BIN-0001"), ("commune-code", b"02269")]),
    raw({**canonical_dossier("x"), "id": 1001}, 7),  # a number where the id goes: dead-lettered, and traced
    raw({**canonical_dossier("x"), "id": " evt-padded "}, 8),
    raw({**canonical_dossier("x"), "id": True}, 9),
]


def found(query: str) -> list[str]:
    tracer = Tracer(query)
    for rec in RECORDS:
        tracer.raw(rec)
    return [s.where.rsplit("/", 1)[1] for s in tracer.timeline()]


@pytest.mark.parametrize("query, offsets", [
    ("TL-251101-0003", ["3"]),  # the portal's MaHoSo
    ("TL-CE-0009", ["5"]), ("evt-9", ["5"]), (trace.trace_id(PARENT), ["5"]),  # subject, id, traceparent
    ("TL-BIN-0001", ["6"]), ("evt-b", ["6"]),  # binary mode: ce_subject, ce_id
    ("1001", ["7"]), ("evt-padded", ["8"]), ("True", []), ("true", []),  # as intake reads them (final review F6)
    ("008123456783", []), ("0912345678", []), ("0", []), ("02269", []), ("TL-251101", []),  # contained, not named
])
def test_a_raw_record_is_found_by_what_names_it_never_by_what_it_contains(query: str, offsets: list[str]) -> None:
    """A CCCD, a phone, the commune or a prefix of a code found every record holding it (the report's oracle: "0"
    found all five portal records, a CCCD its applicant's): now only an event id, dossier code or trace id does."""
    assert found(query) == offsets


SENT = trace.derive("/clients/kcat", "sent-1")
OTHER = trace.derive("/clients/kcat", "sent-2")
PORTAL_HEADERS = [("commune-code", b"02269")]


@pytest.mark.parametrize("record, query, shown", [
    # a portal record's sender trace comes in a `traceparent` header (as an HTTP client names it) or `ce_traceparent`
    (raw(portal_dossier("TL-H-1"), 0, [*PORTAL_HEADERS, ("traceparent", SENT.encode())]), SENT, SENT),
    (raw(portal_dossier("TL-H-2"), 0, [*PORTAL_HEADERS, ("ce_traceparent", SENT.encode())]), SENT, SENT),
    # `traceparent` is taken before `ce_traceparent`, as intake does (`trace.sent_in`)
    (raw(portal_dossier("TL-H-3"), 0, [*PORTAL_HEADERS, ("traceparent", SENT.encode()),
                                         ("ce_traceparent", OTHER.encode())]), SENT, SENT),
    (raw(portal_dossier("TL-H-4"), 0, [*PORTAL_HEADERS, ("traceparent", SENT.encode()),
                                         ("ce_traceparent", OTHER.encode())]), OTHER, None),
    # a structured event's own attribute wins over any header: the header's trace is not the event's
    (raw({**canonical_dossier("evt-h5"), "traceparent": PARENT}, 0, [("traceparent", SENT.encode())]), SENT, None),
    (raw({**canonical_dossier("evt-h6"), "traceparent": PARENT}, 0, [("ce_traceparent", SENT.encode())]), SENT, None),
    (raw({**canonical_dossier("evt-h7"), "traceparent": PARENT}, 0, [("ce_traceparent", SENT.encode())]), PARENT,
     PARENT),
    # without one, the header's is the event's
    (raw(canonical_dossier("evt-h8"), 0, [("traceparent", SENT.encode())]), SENT, SENT),
    # binary mode: `ce_traceparent` is the attribute, a `traceparent` header beside it is not
    (raw({}, 0, [("ce_specversion", b"1.0"), ("ce_id", b"evt-h9"), ("ce_traceparent", SENT.encode()),
                 ("traceparent", OTHER.encode())]), SENT, SENT),
    (raw({}, 0, [("ce_specversion", b"1.0"), ("ce_id", b"evt-h10"), ("ce_traceparent", SENT.encode()),
                 ("traceparent", OTHER.encode())]), OTHER, None),
])
def test_a_raw_record_is_found_by_the_trace_intake_gives_its_event(
        record: ConsumerRecord[bytes, bytes], query: str, shown: str | None) -> None:
    """The raw step read the `ce_traceparent` header alone and before the record's own attribute (the walkthrough's
    left-alone): a portal record sent with a `traceparent` header, whose canonical event carries that trace, was
    not found by it, and a structured event's header was shown as its trace though intake gave it the attribute."""
    tracer = Tracer(trace.trace_id(query) or "")
    tracer.raw(record)
    assert [s.trace for s in tracer.timeline()] == ([] if shown is None else [trace.trace_id(shown)])


def test_a_trace_keeps_at_most_max_steps_and_says_it_was_truncated() -> None:
    """1,500 raw records with one dossier code: the first `MAX_STEPS` are kept, `truncated` is set."""
    tracer = Tracer("TL-MANY")
    for offset in range(1500):
        tracer.raw(raw(portal_dossier("TL-MANY"), offset))
    assert len(tracer.timeline()) == MAX_STEPS and tracer.truncated


def test_a_trace_past_max_steps_stops_remembering_what_it_matched() -> None:
    """50,000 canonical events of one dossier code, each with its own id (a producer can send them): once a step was
    dropped nothing more can be listed, so the ids and raw positions a trace remembers stay within `MAX_STEPS` + 1
    (before: every matched id was kept, in the gateway's memory during GET /v1/trace, for nothing)."""
    tracer = Tracer("TL-FLOOD")
    for offset in range(50_000):
        headers = [("ce_id", f"flood-{offset}".encode()), ("ce_subject", b"TL-FLOOD"),
                   ("ce_type", b"vn.communebus.dossier.status-changed.v1")]
        tracer.canonical(ConsumerRecord("commune.events.dossier", 0, offset, 1_764_000_000_000, 0, b"02269", b"{}",
                                        None, 5, 2, headers))
        tracer.raw(raw(portal_dossier("TL-FLOOD"), offset))
    assert tracer.truncated and len(tracer.steps) == MAX_STEPS
    assert len(tracer.event_ids) <= MAX_STEPS + 1 and len(tracer.raw_positions) <= MAX_STEPS + 1, (
        len(tracer.event_ids), len(tracer.raw_positions))


def test_the_gateway_traces_off_its_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /v1/trace reads the topics in a worker thread (on a loop of its own), not on the loop serving
    POST /v1/events; a truncated trace says so."""
    threads: list[int] = []

    async def trace_timeline(*_: Any) -> Timeline:
        threads.append(threading.get_ident())
        return Timeline([Step(1, "raw", "commune.raw.dossier/0/1", "received from /x")], truncated=True)

    monkeypatch.setattr(operators, "trace_timeline", trace_timeline)
    (tmp_path / "operators.yaml").write_text("duty-officer: operator-key-0123456789\n", encoding="utf-8")
    gateway = app(operators_file=tmp_path / "operators.yaml")
    loop_thread: list[int] = []

    @gateway.get("/loop-thread")
    async def loop() -> None:
        loop_thread.append(threading.get_ident())

    with TestClient(gateway) as client:  # one event loop, in one thread, for both requests
        client.get("/loop-thread")
        answer = client.get("/v1/trace/TL-1", headers={"X-Operator-Key": "operator-key-0123456789"})
    assert answer.status_code == 200 and answer.json()["truncated"] is True
    assert threads and loop_thread and threads[0] != loop_thread[0]


def test_a_citizens_number_in_a_producers_names_is_masked_unless_asked() -> None:
    """A raw record's source and a canonical event's id and subject hold a CCCD and a phone (ADR 0026: producers do
    that): the trace shows them masked, as `tail` does, and still finds the event by its id (before: in clear, by
    the CLI and `GET /v1/trace`, after the applicant's erasure too); `show_personal_data` shows them."""
    named = [("ce_id", b"hs-0912345678"), ("ce_subject", b"001099012345"), ("ce_source", b"/citizens/001099012345"),
             ("ce_type", b"vn.communebus.dossier.status-changed.v1")]
    event = ConsumerRecord("commune.events.dossier", 0, 3, 1_764_000_000_100, 0, b"02269", b"{}", None, 5, 2, named)
    for show in (False, True):
        tracer = Tracer("hs-0912345678", show_personal_data=show)
        tracer.raw(raw({}, 1, named))
        tracer.canonical(event)
        what = " ".join(step.what for step in tracer.timeline())
        assert [s.stage for s in tracer.timeline()] == ["raw", "canonical"]
        assert ("001099012345" in what) is show, what
        assert show or ("received from /citizens/00********45" in what and "id hs-0912345678 subject 00********45"
                        in what), what  # the id stays as the query gave it: the operator typed it


def test_a_dossier_codes_digit_groups_are_no_personal_number() -> None:
    """`TL-251203-7701` or `000.00.12.H56-241015-0003` as a canonical event's subject, found by its event id: shown as
    it is (the first mask hid it, `TL-25*******07`)."""
    for code in ("TL-251203-7701", "000.00.12.H56-241015-0003"):
        named = [("ce_id", b"evt-7701"), ("ce_subject", code.encode()), ("ce_type", b"t")]
        tracer = Tracer("evt-7701")
        tracer.canonical(ConsumerRecord("commune.events.dossier", 0, 3, 1, 0, b"02269", b"{}", None, 5, 2, named))
        assert [s.what for s in tracer.timeline()] == [f"t id evt-7701 subject {code}"]


def test_a_canonical_dossier_event_shows_the_subject_its_applicant_is_sealed_under() -> None:
    """An applicant with a name and an address only is sealed under their dossier's `d-` subject, nothing else's:
    the trace of the dossier shows it, so `erase --subject` can reach it (privacy audit F4); a CCCD's `a-` subject
    likewise. An event without an applicant shows none."""
    from schemas import wire
    from services.privacy.applicant import seal_event
    from tests.notify.events import dossier
    from tests.privacy.keys import keyring

    def traced(applicant: dict[str, str] | None) -> str:
        event, _ = seal_event(keyring(), dossier("e-anon", code="TL-ANON-1", applicant=applicant))
        rec = wire.encode(event)
        tracer = Tracer("TL-ANON-1")
        tracer.canonical(ConsumerRecord("commune.events.dossier", 0, 1, 1, 0, rec.key, rec.value, None, 0, 0,
                                        rec.headers))
        (step,) = tracer.timeline()
        return step.what

    anonymous = traced({"name": "Lò Thị Sen", "address": "Bản Nà Tàng"})
    subject = anonymous.rsplit(" applicant ", 1)[1]
    assert subject.startswith("d-") and len(subject) == 45 and "Sen" not in anonymous
    assert traced({"name": "Lò Thị Sen", "id_number": "001099012345"}).rsplit(" applicant ", 1)[1].startswith("a-")
    assert " applicant " not in traced(None)


def test_topics_this_principal_may_not_read_are_left_out_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator may not read the raw topics (they hold personal data in clear): the trace reads every other topic,
    finds the canonical event, and names the raw topics it left out (before: TopicAuthorizationFailedError ended the
    CLI with a traceback, and the gateway answered 503 "try again", which never helps)."""
    import asyncio

    from aiokafka.errors import TopicAuthorizationFailedError

    from services.cli import trace as tracing
    from services.common.settings import KafkaConnection

    event = ConsumerRecord("commune.events.dossier", 0, 3, 1, 0, b"02269", b"{}", None, 5, 2,
                           [("ce_id", b"evt-7"), ("ce_subject", b"TL-7"), ("ce_type", b"t")])

    async def topics(_conn: object, _namespace: str) -> tuple[list[str], list[str]]:
        return ["commune.raw.dossier"], ["commune.events.dossier"]

    async def partition_counts(_conn: object, names: list[str]) -> dict[str, int]:
        return dict.fromkeys(names, 1)

    async def read_to_end(_conn: object, topic: str, _partitions: object, apply: Any, **_: object) -> int:
        if topic.startswith("commune.raw."):
            raise TopicAuthorizationFailedError(topic)
        if topic == "commune.events.dossier":
            apply(0, event)
        return 1

    monkeypatch.setattr(tracing, "_topics", topics)
    monkeypatch.setattr(tracing, "partition_counts", partition_counts)
    monkeypatch.setattr(tracing, "read_to_end", read_to_end)
    found = asyncio.run(tracing.trace_timeline(KafkaConnection(), "", "evt-7"))
    assert [s.stage for s in found.steps] == ["canonical"]
    assert found.unreadable == ("commune.raw.dossier",)


@pytest.mark.parametrize("name, kept", [
    ("/citizens/001-099-012-345", False), ("/citizens/001.099.012.345", False), ("hs-0912.345.678", False),
    ("+84 912 345 678", False), ("x-\uff10\uff19\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", False),
    ("/citizens/lan.nguyen@example.vn", False), ("079912-345678", False), ("hs-09.12.34.56.78", False),
    ("cccd_079_912_345_678", False), ("0912:345:678", False), ("02269-00001", True), ("02269-251203-0001", True),
    ("hs-05.11.2025-01", True), ("ev-20251105-083000-123", True), ("2025-11-05_08:30:00.123", True),
    ("84-251203-0001", True), ("6f1c0e52-0912-3456-7890-0d6b1f4f2a11", True), ("TL-251203-7701", True),
    ("000.00.12.H56-241015-0003", True), ("000.00.01.H01-251103-0001", True), ("000.00.00.G01-251103-0001", True),
    ("H04-251103-0001", True), ("ev-20251105T083000.123456", True), ("hs0912.345678", False),
    ("cccd079912.345678", False), ("HS0799.1234.5678", False), ("hs84.912.345.678", False),
    ("2025-11-03T08:10:26", True), ("/communes/02269/one-stop", True), ("evt-12345678", True)])
def test_numbers_written_in_groups_or_full_width_are_masked_and_codes_kept(name: str, kept: bool) -> None:
    """A CCCD or phone grouped as people write them, or in full-width digits, is masked as one written in a row
    (review L2: they were shown); dossier codes, dates, commune codes and short ids are not."""
    from services.cli.masking import names_masked

    assert (names_masked(name) == name) is kept, names_masked(name)


def test_within_one_millisecond_an_event_comes_before_the_dead_letter_of_its_repeat() -> None:
    """A dossier event sent twice, in one intake transaction: the event published, its repeat dead-lettered
    (`duplicate_event`) in the same millisecond (CI). The trace listed the dead letter first, as if the repeat had
    come before what it repeats: intake writes a transaction's canonical batches before its dead letters."""
    from schemas.deadletter import DeadLetterContext, Reason

    at = 1_764_000_000_000
    named = [("ce_id", b"evt-r"), ("ce_subject", b"TL-REP-1"), ("ce_type", b"t")]
    context = DeadLetterContext(reason=Reason.DUPLICATE_EVENT, field="id", message="id: already published",
                                source_topic="commune.raw.dossier", source_partition=0, source_offset=2,
                                rejected_at="2025-11-03T04:02:00Z")
    tracer = Tracer("evt-r")
    for offset in (1, 2):
        tracer.raw(ConsumerRecord("commune.raw.dossier", 0, offset, at, 0, b"02269", b"{}", None, 5, 2, named))
    tracer.intake_dead_letter(ConsumerRecord("commune.dlq.intake", 0, 0, at, 0, b"02269", b"{}", None, 5, 2,
                                             [*named, *context.headers()]))
    tracer.canonical(ConsumerRecord("commune.events.dossier", 0, 0, at, 0, b"02269", b"{}", None, 5, 2, named))
    assert [s.stage for s in tracer.timeline()] == ["raw", "raw", "canonical", "dead letter"]
