"""`commune-bus tail` by default shows of a record's key, headers and value only what identifies nobody.

Producers key raw records by a CCCD or a phone, and put a phone or a citizen id in headers of their own
(`x-applicant-phone`, `ce_subject`; ADR 0026): by default a key is shown only when it is a commune code (or
another closed shape of ours), a header value only when it has the closed shape intake keeps in clear on a dead
letter (`CLEAR_HEADERS`, the `dlq.*` context), every other key or header as `<masked, N bytes>`; in a JSON value
every applicant's personal fields are masked (an applicant list, a group naming a `key_id` but holding clear
values), and any run of nine digits or more is masked wherever it is. `--show-personal-data` shows it all.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from schemas.deadletter import DeadLetterContext, Header, Reason
from schemas.personal import ERASED_KEY, SEALED_KEY_HEADER, SEALED_LAYOUT_HEADER, SEALED_SUBJECT_HEADER
from schemas.portal import FIELD_NAMES
from schemas.topics import RAW_DOSSIER, scoped
from services.cli.main import app
from services.cli.masking import masked
from services.cli.render import record_panel
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy import crypto
from services.privacy.deadletters import CLEAR_HEADERS
from tests import naming
from tests.cli.screen import rendered
from tests.kafkatools import produce

TOKEN = crypto.b64(bytes(range(60)))
"""What a sealed field looks like: base64url of nonce, ciphertext and tag."""
LISTED = {"name": "Phạm Văn Hùng", "phone": "0987654321", "id_number": "038095001234"}
"""An applicant inside an applicant list."""
KEYED = {"subject": "a-" + "A" * 43, "key_id": "x", "name": "Lê Thị Mai", "phone": "0903123456",
         "id_number": "001188009876", "email": "mai.le@example.vn"}
"""A group naming a `key_id` whose personal fields are in clear all the same."""
KEY_CCCD, HEADER_PHONE, SUBJECT_CCCD = "001099012345", "0912345678", "079203004567"
PERSONAL = [KEY_CCCD, HEADER_PHONE, SUBJECT_CCCD, *LISTED.values(), *(KEYED[f] for f in ("name", "phone", "id_number",
                                                                                           "email"))]


def tail(bootstrap: str, namespace: str, *extra: str) -> Result:
    return CliRunner().invoke(app, ["tail", "commune.raw.dossier", "--from-beginning", "--max", "2", "--idle", "5",
                                    "--bootstrap", bootstrap, "--namespace", namespace, *extra],
                              env={"COLUMNS": "2000"})


@pytest.mark.kafka
def test_tail_masks_personal_keys_headers_and_values_unless_asked(kafka_bootstrap: str) -> None:
    """Two raw records on a real topic: one keyed by a CCCD, with `x-applicant-phone` and a CCCD in `ce_subject`,
    holding an applicant list; one keyed by its commune, holding a group with a `key_id` and clear values. By
    default none of the personal strings is in the output, while the commune key, the clear-shaped headers and the
    masks are (before: the key, both headers and both value shapes were printed in clear); with
    `--show-personal-data` every one of them is."""
    namespace = "cli" + naming.unique(8)
    topic = scoped(RAW_DOSSIER, namespace)
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [topic]))
    asyncio.run(produce(kafka_bootstrap, topic.name, [
        (KEY_CCCD.encode(), orjson.dumps({"applicant": [LISTED]}),
         [("x-applicant-phone", HEADER_PHONE.encode()), ("ce_subject", SUBJECT_CCCD.encode()),
          ("ce_type", b"vn.communebus.dossier.status-changed.v1"), ("commune-code", b"02269")]),
        (b"02269", orjson.dumps({"data": {"applicant": KEYED}}), [("ce_commune", b"02269")]),
    ]))
    hidden = tail(kafka_bootstrap, namespace)
    assert hidden.exit_code == 0, f"{hidden.output}\n{hidden.exception!r}"
    assert [p for p in PERSONAL if p in hidden.output] == []
    for shown in ("key=<masked, 12 bytes>", "key=02269", "<masked, 10 bytes>", "<masked, 12 bytes>",
                  "x-applicant-phone", "ce_subject", "vn.communebus.dossier.status-changed.v1", "P. V. H.",
                  "09******21", "L. T. M.", "00********76", "m***@example.vn"):
        assert shown in hidden.output, shown
    shown = tail(kafka_bootstrap, namespace, "--show-personal-data")
    assert shown.exit_code == 0, f"{shown.output}\n{shown.exception!r}"
    assert [p for p in PERSONAL if p not in shown.output] == []


@pytest.mark.unit
def test_applicant_lists_and_groups_with_clear_values_are_masked() -> None:
    """An applicant list, and a group naming a `key_id` beside clear values (before: both as they were); a group whose
    personal fields are sealed tokens stays as it is, whatever else it names; a clear field beside sealed ones is
    masked."""
    assert masked({"applicant": [LISTED, [LISTED], "x"]}) == {"applicant": [
        {"name": "P. V. H.", "phone": "09******21", "id_number": "03********34"},
        [{"name": "P. V. H.", "phone": "09******21", "id_number": "03********34"}], "x"]}
    assert masked({"data": {"applicant": KEYED}})["data"]["applicant"] == {
        "subject": KEYED["subject"], "key_id": "x", "name": "L. T. M.", "phone": "09******56",
        "id_number": "00********76", "email": "m***@example.vn"}
    sealed = {"subject": KEYED["subject"], "key_id": "k1", "name": TOKEN, "phone": TOKEN, "preferred_locale": "vi"}
    assert masked({"applicant": sealed}) == {"applicant": sealed}
    assert masked({"applicant": {**sealed, "phone": "0912345678"}}) == {"applicant": {**sealed, "phone": "09******78"}}


@pytest.mark.unit
def test_a_webhook_payloads_applicant_is_masked_as_its_events_is() -> None:
    """A notify ledger entry or dead letter holds a webhook's event as JSON text (`payload`), its applicant in clear
    where sealing is off: masked as that event on its topic would be (before: only its numbers, the applicant's name
    and address shown); a payload that is no JSON has its numbers masked."""
    event = {"type": "vn.gov.commune.dossier.status-changed", "data": {"dossier_code": "TL-251101-0002",
             "applicant": {"name": "Nguyễn Thị Lan", "phone": "0912345678", "address": "Thôn Nà Tàng"}}}
    shown = masked({"request": {"payload": orjson.dumps(event).decode()}})
    assert orjson.loads(shown["request"]["payload"])["data"]["applicant"] == {
        "name": "N. T. L.", "phone": "09******78", "address": "***"}
    assert masked({"payload": "{not json 0912345678"}) == {"payload": "{not json 09******78"}


@pytest.mark.unit
def test_long_digit_runs_are_masked_wherever_they_are() -> None:
    """Nine digits or more in a row (a CMND, a phone, a CCCD) in any string, member name or number of a value; a
    portal time (`NgayNopHoSo`: yyyyMMddHHmmss) stays."""
    from services.cli.masking import personal_numbers_masked

    assert personal_numbers_masked("goi 0912345678 hoac +84987654321") == "goi 09******78 hoac +84*******21"
    assert masked({"ghi_chu": "CCCD 001099012345", "001099012345": 912345678, "MucPhi": 8000,
                   "NgayNopHoSo": "20251101080000"}) == {
        "ghi_chu": "CCCD 00********45", "00********45": "91*****78", "MucPhi": 8000, "NgayNopHoSo": "20251101080000"}
    assert masked({"NgayNopHoSo": "20259901080000", "x": "20251101080000"}) == {"NgayNopHoSo": "20**********00",
                                                                               "x": "20**********00"}


CCCD = st.from_regex(r"0[0-9]{2}[0-3][0-9]{8}", fullmatch=True)
PHONE = st.from_regex(r"(0|\+84|84)[35789][0-9]{8}", fullmatch=True)
PLANT = CCCD | PHONE
"""A CCCD-like 12-digit number, or a phone as Vietnamese numbers are written (0..., +84..., 84...)."""
AROUND = st.text(st.characters(codec="utf-8") | st.sampled_from("0123456789 -._@:/[]{}\"\\"), max_size=6)
"""Text either side of a plant: digits included (a plant inside a longer number)."""
PORTAL_TIMES = [FIELD_NAMES[f] for f in ("submitted_at", "received_at", "due_at", "ended_at", "returned_at",
                                         "rejected_at")]
HEADER_NAMES = st.sampled_from([*CLEAR_HEADERS, *(h.value for h in Header), SEALED_SUBJECT_HEADER, SEALED_KEY_HEADER,
                                SEALED_LAYOUT_HEADER, "ce_subject", "ce_id", "ce_source", "source",
                                "x-applicant-phone"]) | st.text(max_size=20)
NAMES = st.sampled_from(["applicant", "data", "key_id", "subject", "name", "phone", "id_number", "email", "address",
                         "zalo_user_id", "ChuHoSo", "SoGiayToChuHoSo", "SoDienThoaiChuHoSo", "EmailChuHoSo",
                         "DiaChiChuHoSo", *PORTAL_TIMES, "MaHoSo", "note", "id", "source", "dossier_code"]
                        ) | st.text(max_size=8)
MARK = "@PLANT@"
"""Where the plant goes in a generated value (a leaf or a member name)."""
LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.just(MARK) | st.just(TOKEN)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES | st.just(MARK), inner,
                                                                                        max_size=4), max_leaves=12)


def _planted(obj: Any, plant: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(MARK, plant)
    if isinstance(obj, list):
        return [_planted(item, plant) for item in obj]
    if isinstance(obj, dict):
        return {_planted(k, plant): _planted(v, plant) for k, v in obj.items()}
    return obj


def _valid_time(value: str) -> bool:
    try:
        return len(value) == 14 and value.isascii() and datetime.strptime(value, "%Y%m%d%H%M%S").year >= 1975
    except ValueError:
        return False


def _a_time_of_the_portal(obj: Any, plant: str) -> bool:
    """A portal time field holding exactly a valid yyyyMMddHHmmss time with the plant in it: a time, shown (every
    time of this century holds a 12-digit run beginning with 0)."""
    if isinstance(obj, list):
        return any(_a_time_of_the_portal(item, plant) for item in obj)
    if isinstance(obj, dict):
        return any((k in PORTAL_TIMES and isinstance(v, str) and plant in v and _valid_time(v))
                   or _a_time_of_the_portal(v, plant) for k, v in obj.items())
    return False


@pytest.mark.unit
@settings(max_examples=400, deadline=None)
@given(PLANT, AROUND, AROUND, st.sampled_from(["key", "header", "header name", "value", "raw value"]), HEADER_NAMES,
       VALUES, st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=12) | st.none()), max_size=3))
def test_a_planted_personal_number_is_never_in_the_default_panel(
        plant: str, before: str, after: str, where: str, header: str, value: Any,
        others: list[tuple[str, bytes | None]]) -> None:
    """A CCCD- or phone-like number planted in the key, in a header's value (under any name: free ones, the closed
    shapes', `dlq.*`), in a header's name, in a JSON value (a leaf or a member name, at any depth, in any applicant
    shape, sealed tokens around it) or in a value that is not JSON: the default panel never holds it, and
    `--show-personal-data` always does."""
    text = before + plant + after
    key: bytes | None = b"02269"
    headers = list(others)
    if where == "key":
        key = text.encode()
    elif where == "header":
        headers.insert(0, (header, text.encode()))
    elif where == "header name":
        headers.insert(0, (text, b"x"))
    if where == "value":
        if MARK not in json.dumps(value):
            value = {"note": MARK, "data": value}
        value = _planted(value, text)
        assume(plant in json.dumps(value, ensure_ascii=False) and not _a_time_of_the_portal(value, plant))
        raw = json.dumps(value).encode()
    else:
        raw = json.dumps(value).encode() if where != "raw value" else b"not json " + text.encode()
    rec = ConsumerRecord("commune.raw.dossier", 0, 7, 0, 0, key, raw, None, 0, 0, headers)
    assert plant not in rendered(record_panel(rec))
    assert plant in rendered(record_panel(rec, show_personal_data=True))


@pytest.mark.unit
def test_what_identifies_nobody_is_shown() -> None:
    """A commune key, the closed-shaped headers and intake's `dlq.*` context are shown by default; the free-text
    `dlq.message` and a producer's traceparent (ADR 0026: sealed only on dead letters too) are not."""
    context = DeadLetterContext(reason=Reason.INVALID_FIELD, field="data.applicant.phone", message="phone: 0912345678",
                                source_topic="commune.raw.dossier", source_partition=3, source_offset=1234,
                                rejected_at="2026-12-02T10:11:12.345678+00:00").headers()
    headers = [*context, ("ce_time", b"2026-12-02T10:11:12Z"), ("ce_commune", b"02269"), ("content-type",
               b"application/json"), (SEALED_SUBJECT_HEADER, b"dlq:2026-12-02"), (SEALED_KEY_HEADER, b"A" * 22),
               (SEALED_LAYOUT_HEADER, b"record.v1"), ("dlq.replayed", b"0:17"),
               ("ce_traceparent", b"00-4bf92f35123456789e3ce929d0e0e473-00f067aa0ba902b7-01")]
    out = rendered(record_panel(ConsumerRecord("t", 0, 0, 0, 0, b"02269", b"{}", None, 0, 0, headers)))
    for shown in ("key=02269", "invalid_field", "data.applicant.phone", "commune.raw.dossier", "1234",
                  "2026-12-02T10:11:12.345678+00:00", "2026-12-02T10:11:12Z", "application/json", "dlq:2026-12-02",
                  "A" * 22, "record.v1", "0:17"):
        assert shown in out, shown
    assert "0912345678" not in out and f"<masked, {len(b'phone: 0912345678')} bytes>" in out
    traceparent = b"00-4bf92f35123456789e3ce929d0e0e473-00f067aa0ba902b7-01"  # a producer's: may hold a number
    assert traceparent.decode() not in out and f"<masked, {len(traceparent)} bytes>" in out


@pytest.mark.unit
def test_when_the_original_was_written_is_shown_as_a_time() -> None:
    """`dlq.source.written-at` (ms, ADR 0043) identifies nobody: shown as the time it is, not masked as the 13-digit
    run it is written as (review: `<masked, 13 bytes>`, so `dlq list` hid what the guide points operators to)."""
    context = DeadLetterContext(reason=Reason.INVALID_FIELD, field="data", message="m",
                                source_topic="commune.raw.dossier", source_partition=3, source_offset=1234,
                                rejected_at="2026-12-02T10:11:13Z",
                                source_written_at=1764670272345).headers()
    out = rendered(record_panel(ConsumerRecord("t", 0, 0, 0, 0, b"02269", b"{}", None, 0, 0, context)))
    assert re.search(r"dlq\.source\.written-at +2025-12-02T10:11:12\.345Z ", out), out


@pytest.mark.unit
def test_a_dead_letter_sealed_already_erased_shows_its_key_id() -> None:
    """`dlq.sealed.key: erased` (ADR 0042) names no key and identifies nobody: shown, as a data key's id is."""
    headers = [(SEALED_SUBJECT_HEADER, b"dlq:2026-12-02"), (SEALED_KEY_HEADER, ERASED_KEY.encode())]
    out = rendered(record_panel(ConsumerRecord("t", 0, 0, 0, 0, b"02269", b"{}", None, 0, 0, headers)))
    assert re.search(rf"{re.escape(SEALED_KEY_HEADER)} +{ERASED_KEY} ", out) and "<masked" not in out


@pytest.mark.unit
@pytest.mark.parametrize("text", ["0912 345 678", "0912.345.678", "+84 912 345 678", "001 099 012 345",
                                  "001-099-012-345", "lan.nguyen@example.vn"])
def test_formatted_numbers_and_addresses_in_any_field_are_masked(text: str) -> None:
    """Review: only a run of nine digits was masked, so a phone or CCCD written in groups, and an e-mail outside
    the applicant's fields (`data.contact.email`), were shown by default."""
    value = orjson.dumps({"data": {"contact": {"email": text, "note": f"call {text} today"}}})
    rec = ConsumerRecord("commune.raw.dossier", 0, 7, 0, 0, b"02269", value, None, 0, 0, [])
    assert text not in rendered(record_panel(rec))
    assert text in rendered(record_panel(rec, show_personal_data=True))


@pytest.mark.unit
def test_dossier_codes_and_event_ids_are_shown_as_trace_shows_them() -> None:
    """The names of an event and its dossier (`id`, `subject`, `source`, `data.dossier_code`, the portal's `MaHoSo`)
    are masked by `trace`'s rule: a dossier code's digit groups were masked as a phone (`TL-25*******01`), so `tail`
    never showed the code an operator then gives `trace` (integrator walkthrough). A CCCD or phone there still is."""
    codes = {"id": "H08.02269-251103-0001", "subject": "TL-251101-0001", "MaHoSo": "000.00.20.H42-251103-0001",
             "data": {"dossier_code": "G22.34.02-20251103-000017"}}
    value = {**codes, "note": "TL-251101-0001"}
    assert masked(value) == {**codes, "note": "TL-25*******01"}  # free text keeps the stricter rule
    personal = {"id": "0912 345 678", "subject": "hs-0912345678", "source": "/citizens/001-099-012-345",
                "data": {"dossier_code": "cccd_079912_345678"}}
    out = json.dumps(masked(personal))
    assert all(digits not in out.replace(" ", "").replace("-", "").replace("_", "")
               for digits in ("0912345678", "001099012345", "079912345678")), out
    # only the record's own names (review): deeper, as in an applicant, the stricter rule masks grouped numbers
    deeper = {"data": {"applicant": {"id": "01234 5678", "source": "00120 3004567"},
                       "x": {"dossier_code": "01234 5678"}}, "y": {"id": "024 3825 3456"}}
    assert masked(deeper) == {"data": {"applicant": {"id": "01******78", "source": "00*********67"},
                                       "x": {"dossier_code": "01******78"}}, "y": {"id": "02*********56"}}
