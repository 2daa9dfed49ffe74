"""Who is told at a commune: its own contacts first, the wildcard's for every group it leaves out; a rule that
finds nobody is logged and counted."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError
from structlog.testing import capture_logs

from schemas import wire
from schemas.announcement import AnnouncementScheduledEvent
from schemas.notification import DeadlineAlert, NotificationKind
from services.notify import metrics, rules
from services.notify.app import NotifyApp
from services.notify.directory import Directory, load_directory
from services.notify.records import Records
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from services.notify.topics import Names
from tests.notify.events import dossier

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).parents[2] / "infra" / "notify" / "directory.example.toml"
T = datetime(2025, 11, 3, 3, 0, tzinfo=UTC)


def overdue(commune: str, province: str) -> DeadlineAlert:
    return DeadlineAlert(id=f"{commune}:D-1:overdue", kind=NotificationKind.OVERDUE, dossier_code="D-1",
                         commune=commune, province=province, procedure_code="1.001234", officer_id="cb-01",
                         due_at=T - timedelta(days=1), at=T)


def storm(commune: str, province: str, villages: list[str]) -> AnnouncementScheduledEvent:
    return AnnouncementScheduledEvent.model_validate({
        "id": f"ann-{commune}", "source": f"/communes/{commune}/loudspeakers", "time": T, "subject": "A-1",
        "commune": commune, "province": province,
        "data": {"announcement_id": "A-1", "category": "storm", "title": "Bão", "target_clusters": ["C1"],
                 "target_villages": villages, "starts_at": T + timedelta(minutes=30)}})


def test_a_commune_with_its_own_villages_keeps_the_wildcard_staff_and_other_villages() -> None:
    """In the shipped example, commune 31471 lists one Khmer village: its alerts reach the wildcard's officer and
    centre head, a storm its operators and every village (its own contact for its village, the wildcard's for the
    others). Its own table replaced the wildcard's whole: alerts and operators reached nobody, silently."""
    d = load_directory(EXAMPLE)
    assert {r.recipient.ref for r in rules.for_alert(overdue("31471", "92"), d)} == {"officer:cb-01", "centre:head"}
    told = rules.for_event(storm("31471", "92", ["Ấp Prey Chóp", "Ấp Khác"]), d, Registry())
    assert sorted(r.recipient.ref for r in told) == ["operator:loa", "village:head", "village:prey-chop"]
    assert next(r for r in told if r.recipient.ref == "village:prey-chop").recipient.locale.value == "km"
    assert {r.recipient.ref for r in rules.for_alert(overdue("02269", "08"), d)} == {"officer:cb-01", "centre:head"}


def test_a_village_is_found_whatever_its_spelling_in_nfc_or_nfd_case_or_spaces() -> None:
    """A storm naming "ấp  prey chóp" reaches the contact of the directory's "Ấp Prey Chóp", and a directory typed in
    decomposed Unicode (NFD: a Vietnamese keyboard's "Unicode tổ hợp", macOS) is found by the precomposed name
    intake writes. Before: the village's contact was not told, only the '*' entry's (exact string lookups)."""
    decomposed = unicodedata.normalize("NFD", "Ấp Prey Chóp")
    d = Directory.model_validate({"communes": {"31471": {"villages": {
        decomposed: [{"ref": "village:prey-chop", "channel": "sms", "phone": "0900000005"}],
        "*": [{"ref": "village:any", "channel": "sms", "phone": "0900000006"}]}}}})
    for spelling in ("Ấp Prey Chóp", "ấp  prey CHÓP", decomposed):
        told = rules.for_event(storm("31471", "92", [spelling]), d, Registry())
        assert sorted(r.recipient.ref for r in told) == ["village:prey-chop"], spelling
    assert [c.ref for c in d.village("31471", "Ấp Khác")] == ["village:any"]


def test_two_spellings_of_one_village_refuse_the_directory() -> None:
    """Two entries that are one name matched so would give one village two contact lists, found by spelling."""
    with pytest.raises(ValidationError, match="name one village"):
        Directory.model_validate({"communes": {"31471": {"villages": {
            "Ấp Prey Chóp": [{"ref": "village:a", "channel": "sms", "phone": "0900000005"}],
            "ấp prey chóp": [{"ref": "village:b", "channel": "sms", "phone": "0900000006"}]}}}})


def test_a_commune_group_overrides_the_wildcard_group_and_contacts_are_found_in_either() -> None:
    """A group a commune names is its own (not merged with the wildcard's), a cluster it does not name is the
    wildcard's; a ref is found in the commune's table, then the wildcard's (a deferred request's contact is filled
    from it at delivery)."""
    d = Directory.model_validate({"communes": {
        "*": {"centre": [{"ref": "centre:any", "email": "any@example.gov.vn"}],
              "clusters": {"*": [{"ref": "operator:any", "channel": "sms", "phone": "0900000001"}]}},
        "00004": {"centre": [{"ref": "centre:own", "email": "own@example.gov.vn"}],
                  "clusters": {"C1": [{"ref": "operator:c1", "channel": "sms", "phone": "0900000004"}]}}}})
    assert [c.ref for c in d.of("00004").centre] == ["centre:own"]
    assert [c.ref for c in d.cluster_operators("00004", ["C1", "C2"])] == ["operator:c1", "operator:any"]
    assert [c.ref for c in d.of("00008").centre] == ["centre:any"]
    assert [d.contact("00004", ref) is not None for ref in ("operator:any", "centre:own", "nobody")] == [
        True, True, False]


def consumed(topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, 7, 0, 0, b"02269", value, None, 5, len(value), headers)


def test_a_matching_rule_that_finds_nobody_is_logged_and_counted_without_personal_data() -> None:
    """A storm in a commune the directory does not cover, an applicant without any contact and an alert with no
    officer or centre: each matching rule that finds nobody is logged (notify.no_recipient: rule, commune, event
    type, trace id) and counted by rule; it gave no request, so no status, no dead letter, no log."""
    names = Names("t")
    records = Records(NotifySettings(deadlines=False), names, Directory(), Registry(), None, None, None,  # type: ignore[arg-type]
                      None)  # type: ignore[arg-type]
    before = {rule: metrics.NO_RECIPIENT.labels(rule)._value.get()
              for rule in ("announcement.emergency", "dossier.accepted", "dossier.overdue")}
    event = storm("02269", "08", ["Thôn Nà Tàng"])
    unreachable = dossier("no-contact", applicant={"name": "Trần Văn Minh", "preferred_locale": "vi"})
    with capture_logs() as logs:
        for e, topic in ((event, names.announcement), (unreachable, names.dossier)):
            rec = wire.encode(e)
            record = consumed(topic, rec.value or b"", rec.headers)
            assert records.derive(TopicPartition(topic, 0), record) == ([], None)
        alert = overdue("02269", "08").model_dump_json().encode()
        assert records.derive(TopicPartition(names.alerts, 0), consumed(names.alerts, alert, [])) == ([], None)
    found = [(e["rule"], e["log_level"]) for e in logs if e["event"] == "notify.no_recipient"]
    assert found == [("announcement.emergency", "warning"), ("dossier.accepted", "info"),
                     ("dossier.overdue", "warning")]
    assert all(e["commune"] == "02269" for e in logs) and "Trần" not in str(logs)
    assert {rule: metrics.NO_RECIPIENT.labels(rule)._value.get() - n for rule, n in before.items()} == dict.fromkeys(
        before, 1)


@pytest.mark.parametrize(("field", "value"), [("phone", "0900 000 002 / 0912 345"), ("email", "a" * 250 + "@x.vn"),
                                              ("zalo_user_id", "z" * 65), ("ref", "village:" + "x" * 121),
                                              ("ref", "")])
def test_a_contact_a_recipient_could_not_hold_is_refused_at_load_naming_where_not_what(
        tmp_path: Path, field: str, value: str) -> None:
    """A contact field over the recipient's limits (ref 1-128, phone 20, e-mail 254, Zalo id 64) refuses the
    directory at load, naming where it is and never its value. It loaded, and every event reaching that contact
    (a storm warning to every village) was skipped whole as internal_error."""
    contact = {"ref": "village:na-tang", "channel": "sms", "phone": "0900000002", field: value}
    path = tmp_path / "directory.toml"
    path.write_text(one_village(contact), encoding="utf-8")
    with pytest.raises(ValidationError) as refused:
        load_directory(path)
    assert f"communes.*.villages.Thôn Nà Tàng.0.{field}" in str(refused.value)
    if value:
        assert value not in str(refused.value)


def one_village(contact: dict[str, str]) -> str:
    """A directory whose wildcard lists one village with `contact`."""
    fields = ", ".join(f'{k} = "{v}"' for k, v in contact.items())
    return f'[communes."*".villages]\n"Thôn Nà Tàng" = [{{ {fields} }}]\n'


SAME_TABLE = {"*": {"villages": {
    "Thôn Nà Tàng": [{"ref": "village:head", "channel": "sms", "phone": "0900000001"}],
    "Thôn Bản Mới": [{"ref": "village:head", "channel": "sms", "phone": "0900000002"}]}}}
OVERRIDE = {"*": {"villages": {"*": [{"ref": "village:head", "channel": "sms", "phone": "0900000002"}]}},
            "02269": {"villages": {"Thôn Nà Tàng": [{"ref": "village:head", "channel": "sms", "phone": "0900000001"}]}}}


@pytest.mark.parametrize(("communes", "where"), [(SAME_TABLE, "communes.*:"),
                                                 (OVERRIDE, "communes.02269 with the wildcard's:")],
                         ids=["two-villages", "commune-over-wildcard"])
def test_a_ref_naming_two_contacts_one_lookup_can_see_is_refused_at_load(communes: object, where: str) -> None:
    """Two village heads both `village:head` (in one table, or a commune's own village reusing the wildcard's ref)
    refuse the directory, naming where and the ref, never a phone: a deferred message is refilled by its ref at
    delivery, and Thôn Bản Mới's day-before message was texted to Thôn Nà Tàng's head."""
    with pytest.raises(ValidationError) as refused:
        Directory.model_validate({"communes": communes})
    assert where in str(refused.value) and "'village:head'" in str(refused.value)
    assert "090000000" not in str(refused.value)


def test_a_ref_repeated_for_one_contact_or_in_communes_that_never_share_a_lookup_loads() -> None:
    """The same contact in two groups (an operator also a cluster's, as in the shipped example) is one contact; two
    communes' own tables never seen by one lookup may reuse a ref for different people; each refills its own."""
    d = Directory.model_validate({"communes": {
        "*": {"operators": [{"ref": "operator:loa", "channel": "sms", "phone": "0900000001"}],
              "clusters": {"*": [{"ref": "operator:loa", "channel": "sms", "phone": "0900000001"}]}},
        "02269": {"villages": {"Thôn Nà Tàng": [{"ref": "village:head", "channel": "sms", "phone": "0900000003"}]}},
        "31471": {"villages": {"Ấp Prey Chóp": [{"ref": "village:head", "channel": "sms", "phone": "0900000004"}]}}}})
    assert [(c.phone if (c := d.contact(k, "village:head")) else None) for k in ("02269", "31471", "00004")] == [
        "0900000003", "0900000004", None]
    assert load_directory(EXAMPLE).contact("31471", "operator:loa") is not None


def test_a_commune_replacing_a_wildcard_group_may_keep_its_refs() -> None:
    """A commune's own centre (or its '*' village) replaces the wildcard's whole: the wildcard's contacts there are
    never reached from it, so the same ref for another address is no conflict, and a deferred message is refilled
    with the commune's own. (The first version of the rule refused it: notify would not start after an upgrade;
    review of 2026-12-02.)"""
    d = Directory.model_validate({"communes": {
        "*": {"centre": [{"ref": "centre:inbox", "email": "wildcard@example.gov.vn"}],
              "villages": {"Thôn Nà Tàng": [{"ref": "village:head", "channel": "sms", "phone": "0900000001"}]}},
        "02269": {"centre": [{"ref": "centre:inbox", "email": "own@example.gov.vn"}],
                  "villages": {"*": [{"ref": "village:head", "channel": "sms", "phone": "0900000002"}]}}}})
    assert [c.email for c in d.of("02269").centre] == ["own@example.gov.vn"]
    assert (found := d.contact("02269", "centre:inbox")) is not None and found.email == "own@example.gov.vn"
    assert [c.phone for c in d.village("02269", "Thôn Nà Tàng")] == ["0900000002"]
    assert (head := d.contact("02269", "village:head")) is not None and head.phone == "0900000002"


def test_notify_refusing_its_directory_logs_where_and_why_never_the_value(tmp_path: Path) -> None:
    """Notify given a directory it refuses ends its run having logged `notify.file_refused` (critical) with each
    refusal's place and reason, never the value: the crash log names only the error's type and file:line, so the
    operator was left without what to fix."""
    path = tmp_path / "directory.toml"
    path.write_text(one_village({"ref": "village:na-tang", "channel": "sms", "phone": "0900 000 002 / 0912 345"}),
                    encoding="utf-8")
    with capture_logs() as logs, pytest.raises(ValidationError):
        NotifyApp(NotifySettings(directory_file=path), None)  # type: ignore[arg-type]
    [refused] = [e for e in logs if e["event"] == "notify.file_refused"]
    assert refused["log_level"] == "critical" and refused["file"] == "directory" and refused["path"] == str(path)
    assert refused["errors"] == ["communes.*.villages.Thôn Nà Tàng.0.phone: String should have at most 20 characters"]
    assert "0912" not in str(logs)


@pytest.mark.parametrize("kind", ["emergency", "webhook", "dossier_accepted"])
def test_an_alert_whose_kind_is_no_alert_kind_is_skipped_as_invalid(kind: str) -> None:
    """An alert on commune.notify.alerts whose kind is a notification kind but no alert's (the topic is the
    tracker's; a tool or a bug could write one): skipped once as `invalid_field`. It passed the schema, and each of
    its two requests raised KeyError in `render` (no such alert template): two `internal_error` dead letters, on the
    count operators are paged on (audit)."""
    names = Names("t")
    records = Records(NotifySettings(deadlines=False), names, load_directory(EXAMPLE), Registry(), None, None, None,  # type: ignore[arg-type]
                      None)  # type: ignore[arg-type]
    before = {r: metrics.SKIPPED.labels(r)._value.get() for r in ("invalid_field", "internal_error")}
    alert = overdue("02269", "08").model_dump(mode="json") | {"kind": kind}
    value = json.dumps(alert).encode()
    assert records.derive(TopicPartition(names.alerts, 0), consumed(names.alerts, value, [])) == ([], None)
    assert {r: metrics.SKIPPED.labels(r)._value.get() - n for r, n in before.items()} == {
        "invalid_field": 1, "internal_error": 0}
    good = overdue("02269", "08").model_dump_json().encode()
    assert len(records.derive(TopicPartition(names.alerts, 0), consumed(names.alerts, good, []))[0]) == 2
