"""Pure core of notify: rules, templates, SMS segments, quiet hours, back-off, ids, deadlines, offsets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codes import Locale, Priority
from schemas.notification import Audience, ChannelKind, TrackedDossier
from schemas.notification import NotificationKind as K
from schemas.times import VIETNAM
from services.notify import deadlines, rules, sms
from services.notify.channels.base import compose
from services.notify.deadline_settings import DeadlineSettings
from services.notify.deadline_worker import clock_of
from services.notify.delivery import Dispatcher
from services.notify.masking import mask_email, mask_name, mask_phone
from services.notify.offsets import OffsetTracker
from services.notify.params import listing
from services.notify.policy import Backoff, QuietHours, TokenBucket, notification_id
from services.notify.settings import NotifySettings
from services.notify.subscribers import MAX_SKEW_S, Registry, signature, verify
from services.notify.templates import TEMPLATES, render
from services.notify.timing import ALERT_WINDOW
from tests.notify.events import (
    broadcast_failed,
    day_ending_in,
    directory,
    dossier,
    storm,
    visit_completed,
    visit_scheduled,
)

pytestmark = pytest.mark.unit
NO_SUBS = Registry()


def test_accepted_dossier_tells_the_applicant_code_procedure_and_due_date() -> None:
    """An accepted dossier yields one SMS to the applicant with code, procedure and the Vietnam-time due date."""
    [r] = rules.for_event(dossier(status=2), directory(), NO_SUBS)
    assert (r.kind, r.channel, r.audience, r.recipient.ref) == (
        K.DOSSIER_ACCEPTED, ChannelKind.SMS, Audience.CITIZEN, "applicant")
    text = compose(r, 3).sms_text
    assert text == "Hồ sơ TL-251101-0002 (Đăng ký khai sinh) đã được tiếp nhận. Ngày hẹn trả kết quả: 07/11/2025."


@pytest.mark.parametrize(("status", "kind"), [(3, K.DOSSIER_REJECTED), (5, K.DOCUMENTS_REQUESTED),
                                              (6, K.PAYMENT_REQUESTED), (9, K.RESULT_READY), (10, K.RESULT_RETURNED)])
def test_each_citizen_facing_status_has_its_rule(status: int, kind: K) -> None:
    """Rejected, documents/payment requested, processed and returned each notify the applicant once."""
    extra: dict[str, Any] = {}
    if status == 3:
        extra = {"rejection_reason": "Thiếu tờ khai", "received_at": None, "due_at": None}
    if status == 5:
        extra = {"requested_documents": ["Bản sao CCCD"]}
    if status == 6:
        extra = {"fees": [{"name": "Lệ phí", "amount_vnd": 8000}]}
    [r] = rules.for_event(dossier(status=status, **extra), directory(), NO_SUBS)
    assert r.kind is kind
    text = compose(r, 3).text
    assert "TL-251101-0002" in text
    if status == 3:
        assert "Thiếu tờ khai" in text
    if status == 5:
        assert "Bản sao CCCD" in text
    if status == 6:
        assert "8.000" in text


def test_in_progress_dossier_notifies_nobody() -> None:
    """Status 4 (in progress) is internal: no notification."""
    assert rules.for_event(dossier(status=4), directory(), NO_SUBS) == []


def test_khmer_preference_renders_khmer_and_unknown_locale_falls_back_to_vietnamese() -> None:
    """km preference gives Khmer text; a kind without a Khmer template falls back to Vietnamese."""
    [r] = rules.for_event(dossier(status=2, locale="km"), directory(), NO_SUBS)
    m = compose(r, 3)
    assert m.locale is Locale.KM and "ត្រូវបានទទួលហើយ" in m.sms_text and m.sms_count.encoding == "UCS-2"
    assert render(K.OVERDUE, Locale.KM, {"dossier_code": "X", "due_date": "d"}).locale is Locale.VI


def test_every_kind_has_a_vietnamese_template() -> None:
    """Vietnamese is the fallback, so every kind except webhooks must have it."""
    assert all(Locale.VI in TEMPLATES[k] for k in K if k is not K.WEBHOOK)


def test_gsm7_and_ucs2_segment_counts() -> None:
    """160/153 septets for GSM-7 (extension chars count 2), 70/67 code units for UCS-2."""
    assert sms.count("a" * 160) == sms.SmsCount("GSM-7", 160, 1)
    assert sms.count("a" * 161).segments == 2
    assert sms.count("a" * 306).segments == 2 and sms.count("a" * 307).segments == 3
    assert sms.count("{" * 80) == sms.SmsCount("GSM-7", 160, 1)
    assert sms.count("ơ" * 70) == sms.SmsCount("UCS-2", 70, 1)
    assert sms.count("ơ" * 71).segments == 2 and sms.count("ơ" * 135).segments == 3



def billed(text: str) -> int:
    """Segments as an SMSC splits `text`: a surrogate pair or a GSM-7 escape pair never straddles two segments."""
    gsm = sms.is_gsm7(text)
    sizes = [(2 if c in sms.GSM7_EXTENSION else 1) if gsm else (2 if ord(c) > 0xFFFF else 1) for c in text]
    single, multi = (160, 153) if gsm else (70, 67)
    if sum(sizes) <= single:
        return 1 if sizes else 0
    parts, used = 1, 0
    for size in sizes:
        parts, used = (parts + 1, size) if used + size > multi else (parts, used + size)
    return parts


@pytest.mark.parametrize("text", ["a" * 152 + "[" + "a" * 153, "a" * 152 + "€" * 77, "ơ" * 66 + "🌀" + "ơ" * 67,
                                  "🌀" * 68, "Cum loa C1: " + "[" * 500, "Bão số 3 " + "🌀" * 290])
def test_segments_are_counted_and_cut_without_splitting_a_pair(text: str) -> None:
    """A surrogate pair (an emoji, a rare Han-Nom character) or a GSM-7 escape pair (€ [ ] { } ~ ^ | \\) is never
    split across two segments, so the count is what the operator bills and a text cut to 6 segments is 6. Units
    were divided by 153 or 67 as if a segment could end anywhere: 7 segments billed under a cap of 6."""
    assert sms.count(text).segments == billed(text)
    for cap in (1, 2, 6):
        out = sms.cut(text, cap)
        assert billed(out) <= cap and sms.count(out).segments == billed(out)
        assert out == text or out.endswith("...") or out.endswith("…")


def test_long_vietnamese_sms_goes_unaccented_only_over_the_limit() -> None:
    """Accented text within the limit is kept; over it, the unaccented GSM-7 variant is sent."""
    short = "Hồ sơ đã được tiếp nhận."
    assert sms.fit(short, 1, True)[0] == short
    long = "Hồ sơ TL-251101-0002 (Đăng ký khai sinh) đã được tiếp nhận. Ngày hẹn trả kết quả: 07/11/2025."
    text, counted = sms.fit(long, 1, True)
    assert text == "Ho so TL-251101-0002 (Dang ky khai sinh) da duoc tiep nhan. Ngay hen tra ket qua: 07/11/2025."
    assert counted == sms.SmsCount("GSM-7", len(text), 1)
    assert sms.fit(long, 1, False)[1].encoding == "UCS-2"


DOCUMENT = "Bản sao giấy khai sinh có chứng thực " * 13  # 481 characters (items may have 500)


@pytest.mark.parametrize("locale", ["vi", "km", "en"])
def test_an_sms_stays_within_the_segment_cap_whatever_the_event_holds(locale: str) -> None:
    """A dossier asking for 1,000 long documents gives an SMS of at most the cap's segments (6 by default), its list
    cut to the first items and how many more, then shortened; it gave one SMS of 3,151-7,196 segments."""
    [r] = rules.for_event(dossier(status=5, locale=locale, requested_documents=[DOCUMENT] * 1000), directory(),
                          NO_SUBS)
    assert compose(r, 2).sms_count.segments <= sms.MAX_SEGMENTS == NotifySettings().sms_max_segments == 6
    assert r.params["documents"].endswith(", +995") and r.params["documents"].count(",") == 5
    one = compose(r, 2, max_segments=1)  # its list shortened; then, if the rest is still too long, its end cut
    assert one.sms_count.segments == 1
    assert one.sms_text.rstrip(".។").endswith(r.params["due_date"]) or one.sms_text.endswith(
        "..." if one.sms_count.encoding == "GSM-7" else "…")


DOCUMENTS = ["Bản sao Giấy chứng nhận quyền sử dụng đất, quyền sở hữu nhà ở và tài sản khác gắn liền với đất",
             "Tờ khai đăng ký thường trú (mẫu CT01) có xác nhận của chủ hộ",
             "Bản sao Giấy khai sinh của người được đăng ký thường trú",
             "Giấy tờ, tài liệu chứng minh chỗ ở hợp pháp theo quy định",
             "Văn bản đồng ý cho đăng ký thường trú của chủ sở hữu chỗ ở hợp pháp", "Giấy tờ khác"]


@pytest.mark.parametrize("locale", ["vi", "km", "en"])
@pytest.mark.parametrize("max_segments", [3, 4, 6])
def test_an_sms_too_long_shortens_its_documents_and_keeps_the_due_date(locale: str, max_segments: int) -> None:
    """Six real documents requested of a provincial dossier: the SMS shortens the list, not its end, so the new due
    date is still there within the cap (a Khmer or English SMS ended "New result date: 07/11/202…", cut in UCS-2,
    where only Vietnamese may go unaccented; notify audit). The e-mail text keeps the list whole."""
    [r] = rules.for_event(dossier(status=5, locale=locale, code="000.00.12.H56-251103-0001",
                                  requested_documents=DOCUMENTS), directory(), NO_SUBS)
    m = compose(r, 2, max_segments=max_segments)
    assert m.sms_count.segments <= max_segments
    assert m.sms_text.rstrip(".។").endswith(r.params["due_date"]), m.sms_text[-60:]
    assert r.params["dossier_code"] in m.sms_text and r.params["documents"] in m.text


@pytest.mark.parametrize("locale", ["vi", "km", "en"])
def test_a_payment_request_without_fees_asks_for_the_fee_without_an_amount(locale: str) -> None:
    """A status-6 event listing no fee (a progress update carries none) read "pay the fee of 0 VND" (notify audit);
    with fees, the amount is said."""
    [none] = rules.for_event(dossier(status=6, locale=locale), directory(), NO_SUBS)
    [some] = rules.for_event(dossier(status=6, locale=locale, fees=[{"amount_vnd": 150000, "name": "Lệ phí"}]),
                             directory(), NO_SUBS)
    assert none.kind is some.kind is K.PAYMENT_REQUESTED
    text = compose(none, 2).text
    assert " 0 " not in text and none.params["dossier_code"] in text
    assert "150.000" in compose(some, 2).text


@pytest.mark.parametrize("invisible", list(sms.INVISIBLE))
def test_an_invisible_character_does_not_make_an_english_sms_ucs2(invisible: str) -> None:
    """A zero-width space in a procedure name, or a byte-order mark ending a dossier code: the English SMS went as
    UCS-2, 2 segments for 1 (notify audit); it goes as GSM-7 without them, and with curly quotes, dashes and an
    ellipsis in their GSM-7 look-alikes. Khmer keeps its zero-width spaces."""
    plain = "Dossier TL-251101-0002 (Birth registration) was received. Come back for the result on 07/11/2025."
    text, counted = sms.fit(plain.replace("Birth", f"Birth{invisible}"), 2, allow_unaccented=False)
    assert (text, counted.encoding) == (plain, "GSM-7")
    typographic = plain.replace("(Birth registration)", "\u201cBirth registration\u201d \u2013 \u2018first\u2019\u2026")
    text, counted = sms.fit(typographic, 2, allow_unaccented=False)
    assert text == plain.replace("(Birth registration)", "\"Birth registration\" - 'first'...")
    assert counted.encoding == "GSM-7"
    khmer = "ឯកសារ\u200bត្រូវបានទទួល"
    assert sms.fit(khmer, 2, allow_unaccented=False)[0] == khmer


def test_an_english_sms_shortened_stays_gsm7() -> None:
    """A plain-ASCII English SMS over its cap is shortened with "...", not "…" (no GSM-7 character): with "…" it went
    UCS-2, 67 characters a segment instead of 153, and kept 351 characters of a rejection reason where cutting its
    end kept 868 (review)."""
    reason = "The applicant did not bring the original of the land use right certificate " * 13
    [r] = rules.for_event(dossier(status=3, locale="en", rejection_reason=reason, rejected_at=datetime.now(UTC),
                                  received_at=None, due_at=None), directory(), NO_SUBS)
    m = compose(r, 2)
    assert m.sms_count.encoding == "GSM-7" and m.sms_count.segments <= sms.MAX_SEGMENTS
    kept = m.sms_text.split("Reason: ", 1)[1] if "Reason: " in m.sms_text else m.sms_text
    assert len(kept) > 800 and "…" not in m.sms_text, m.sms_text[-80:]
    # documents past 80 characters are listed cut with "…" (`params.listing`), which goes as "..."
    [docs] = rules.for_event(dossier(status=5, locale="en", requested_documents=[reason[:90]] * 5), directory(),
                             NO_SUBS)
    assert "…" in docs.params["documents"]
    two = compose(docs, 2, max_segments=2)
    assert two.sms_count.encoding == "GSM-7" and two.sms_text.rstrip(".").endswith(docs.params["due_date"])


def test_long_lists_and_items_in_parameters_are_cut_with_the_count_left_out() -> None:
    """A list parameter keeps its first five items, each of at most 80 characters, then "+k" for the k left out:
    the parameters (ZNS template data, e-mail, ledger and dead letters) are bounded, not only the SMS."""
    assert listing(["a", "b"]) == "a, b" and listing([]) == "-"
    assert listing([str(i) for i in range(12)]) == "0, 1, 2, 3, 4, +7"
    assert listing(["x" * 81]) == "x" * 79 + "…"
    clusters = [f"C{i}" for i in range(1000)]
    event = storm(category="cultural_event")
    event = event.model_copy(update={"data": event.data.model_copy(update={"target_clusters": clusters})})
    [r] = rules.for_event(event, directory(), NO_SUBS)
    assert r.params["clusters"] == "C0, C1, C2, C3, C4, +995"


def test_the_sms_cap_cuts_by_billed_units_in_either_encoding() -> None:
    """Cut to the cap: GSM-7 counts an extension character as two septets and ends with "...", UCS-2 ends with
    "…"; a text within the cap is not touched."""
    text, counted = sms.fit("a" * 2000, 9, False, max_segments=3)
    assert counted == sms.SmsCount("GSM-7", 459, 3) and text == "a" * 456 + "..."
    text, counted = sms.fit("{" * 2000, 9, False, max_segments=1)
    assert counted.segments == 1 and counted.units <= 160 and text.endswith("...")
    text, counted = sms.fit("ơ" * 2000, 9, False, max_segments=2)
    assert counted == sms.SmsCount("UCS-2", 134, 2) and text == "ơ" * 133 + "…"
    assert sms.fit("a" * 459, 9, False, max_segments=3) == ("a" * 459, sms.SmsCount("GSM-7", 459, 3))


def test_quiet_hours_cross_midnight_in_vietnam_time() -> None:
    """21:00-07:00 Asia/Ho_Chi_Minh is quiet; a message at 22:00 is released at 07:00 next day."""
    q = QuietHours()
    at_22 = datetime(2025, 11, 3, 15, 0, tzinfo=UTC)  # 22:00 in Vietnam
    assert q.is_quiet(at_22) and q.is_quiet(datetime(2025, 11, 3, 23, 30, tzinfo=UTC))
    assert not q.is_quiet(datetime(2025, 11, 3, 0, 0, tzinfo=UTC))  # 07:00
    assert q.release_at(at_22) == datetime(2025, 11, 4, 0, 0, tzinfo=UTC)
    noon = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
    assert q.release_at(noon) == noon


def _vn(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A time on `day` November 2025 in Vietnam, as UTC."""
    return datetime(2025, 11, day, hour, minute, second, tzinfo=VIETNAM).astimezone(UTC)


def test_quiet_hours_edges_windows_and_release_times() -> None:
    """The window starts on its first second and ends on its last (21:00 quiet, 07:00 not); after midnight a message
    goes at 07:00 the same morning, not the next; an end with minutes and seconds is kept to the second; a window
    inside one day (a configured lunch hour) is quiet only within it; start == end is never quiet (only 22:00 and
    noon were tested: these went unseen; mutation test)."""
    q = QuietHours()
    assert [q.is_quiet(_vn(3, *t)) for t in ((20, 59, 59), (21, 0, 0), (6, 59, 59), (7, 0, 0))] == [
        False, True, True, False]
    assert q.release_at(_vn(4, 3, 15)) == _vn(4, 7)
    assert q.release_at(_vn(3, 21)) == _vn(4, 7)
    late = QuietHours(time(22, 15), time(7, 30, 15))
    assert late.is_quiet(_vn(4, 7, 30, 14)) and not late.is_quiet(_vn(4, 7, 30, 15))
    assert not late.is_quiet(_vn(3, 22, 14)) and late.is_quiet(_vn(3, 22, 15))
    assert late.release_at(_vn(3, 23)) == _vn(4, 7, 30, 15) and late.release_at(_vn(4, 1)) == _vn(4, 7, 30, 15)
    lunch = QuietHours(time(12, 0), time(13, 30))
    assert [lunch.is_quiet(_vn(3, *t)) for t in ((11, 59), (12, 0), (13, 29), (13, 30), (22, 0), (3, 0))] == [
        False, True, True, False, False, False]
    assert lunch.release_at(_vn(3, 12, 40)) == _vn(3, 13, 30) and lunch.release_at(_vn(3, 22)) == _vn(3, 22)
    never = QuietHours(time(0, 0), time(0, 0))
    assert not any(never.is_quiet(_vn(3, h)) for h in range(24))


def test_the_default_retries_outlast_a_quarter_hour_provider_outage() -> None:
    """With the service's defaults, the shortest retry budget (every wait at the low end of its jitter) is over
    15 minutes: a provider outage that long dead-letters nothing (the defaults gave 28 s)."""
    b = NotifySettings().backoff()
    shortest = sum(min(b.cap_s, b.base_s * b.factor ** (n - 1)) / 2 for n in range(1, b.max_attempts))
    assert shortest > 15 * 60 and b.cap_s <= 60  # and a recovered provider is tried again within a minute


def test_backoff_grows_exponentially_with_bounded_jitter_and_gives_up() -> None:
    """Delay n is in [d/2, d] for d = min(cap, base*2^(n-1)); the last attempt gives up."""
    b, rng = Backoff(base_s=1, cap_s=8, max_attempts=5), random.Random(1)
    for n, d in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 8)]:
        assert d / 2 <= b.delay(n, rng) <= d
    assert not b.gives_up_after(4) and b.gives_up_after(5)


def test_token_bucket_limits_rate() -> None:
    """After the burst, the next send waits 1/rate."""
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.wait_time(100.0) == 0 and bucket.wait_time(100.0) == 0
    assert bucket.wait_time(100.0) == pytest.approx(0.1)
    assert bucket.wait_time(100.2) == 0


def test_token_bucket_lets_an_emergency_borrow_a_burst_that_routine_callers_pay_back() -> None:
    """An emptied bucket still gives an emergency a token at once, down to a debt of one burst; routine callers then
    wait until the debt is paid and a token is there; emergencies beyond the debt keep the rate too."""
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.wait_time(100.0) == 0 and bucket.wait_time(100.0) == 0  # the burst, taken by routine sends
    assert bucket.wait_time(100.0) == pytest.approx(0.1)  # routine: empty
    assert bucket.wait_time(100.0, urgent=True) == 0 and bucket.wait_time(100.0, urgent=True) == 0  # borrowed
    assert bucket.wait_time(100.0, urgent=True) == pytest.approx(0.1)  # a burst's debt: emergencies wait too
    assert bucket.wait_time(100.0) == pytest.approx(0.3)  # routine: the debt of 2 and its own token
    assert bucket.wait_time(100.31) == 0


def test_notification_id_is_deterministic_per_event_rule_recipient() -> None:
    """Same inputs give the same id; any change gives another."""
    a = notification_id("e1", "dossier.accepted", "applicant")
    assert a == notification_id("e1", "dossier.accepted", "applicant")
    assert len({a, notification_id("e2", "dossier.accepted", "applicant"), notification_id("e1", "x", "applicant"),
                notification_id("e1", "dossier.accepted", "officer:1")}) == 4
    first, again = rules.for_event(dossier(), directory(), NO_SUBS), rules.for_event(dossier(), directory(), NO_SUBS)
    assert first[0].notification_id == again[0].notification_id


def test_emergency_announcement_goes_to_operators_and_villages_in_the_priority_lane() -> None:
    """A storm warning is EMERGENCY priority, for cluster operators and village contacts (in their language)."""
    out = rules.for_event(storm(), directory(), NO_SUBS)
    assert {r.recipient.ref for r in out} == {"operator:c1", "village:head"}
    assert all(r.priority is Priority.EMERGENCY and r.kind is K.EMERGENCY for r in out)
    village = next(r for r in out if r.recipient.ref == "village:head")
    assert compose(village, 3).text.startswith("បន្ទាន់")


def test_routine_announcement_goes_to_cluster_operators_only() -> None:
    """A cultural event announcement tells the operators of targeted clusters, routine priority."""
    [r] = rules.for_event(storm(category="cultural_event"), directory(), NO_SUBS)
    assert (r.kind, r.recipient.ref, r.priority) == (K.ANNOUNCEMENT_SCHEDULED, "operator:c1", Priority.ROUTINE)


def test_visit_is_announced_to_villages_the_day_before_and_summarised_to_the_centre() -> None:
    """Visit scheduled -> village contacts at 08:00 the day before; completed -> centre summary with counts."""
    [r] = rules.for_event(visit_scheduled(), directory(), NO_SUBS)
    assert r.kind is K.VISIT_TOMORROW and r.not_before == datetime(2025, 11, 9, 1, 0, tzinfo=UTC)
    [s] = rules.for_event(visit_completed(), directory(), NO_SUBS)
    assert s.recipient.ref == "centre:inbox" and "41" in compose(s, 3).text
    [f] = rules.for_event(broadcast_failed(), directory(), NO_SUBS)
    assert f.kind is K.BROADCAST_FAILED and f.recipient.ref == "operator:c1"


def test_webhook_subscribers_get_events_without_personal_data_and_signed() -> None:
    """A matching subscriber gets the event as CloudEvents JSON minus the applicant; signatures verify."""
    reg = Registry.model_validate({"subscribers": [
        {"name": "prov-08", "url": "http://127.0.0.1:1/h", "secret": "s3", "provinces": ["08"]},
        {"name": "prov-20", "url": "http://127.0.0.1:1/h", "secret": "s3", "provinces": ["20"]}]})
    hooks = [r for r in rules.for_event(dossier(), directory(), reg) if r.channel is ChannelKind.WEBHOOK]
    assert [h.recipient.ref for h in hooks] == ["subscriber:prov-08"]
    payload = hooks[0].payload or ""
    assert "0912345678" not in payload and '"dossier_code":"TL-251101-0002"' in payload
    sig = signature("s3", "id1", "17", b"{}")
    assert verify("s3", "id1", "17", b"{}", sig, now=17) and not verify("s3", "id1", "17", b"{ }", sig, now=17)


def test_a_webhook_signature_check_refuses_replays_and_odd_headers_without_raising() -> None:
    """A delivery older (or newer) than five minutes is a replay; a non-ASCII or junk header is False, not a
    TypeError; a timestamp that is no number is False."""
    sig = signature("s3", "id1", "1000", b"{}")
    assert verify("s3", "id1", "1000", b"{}", sig, now=1000 + MAX_SKEW_S)
    assert not verify("s3", "id1", "1000", b"{}", sig, now=1001 + MAX_SKEW_S)
    assert not verify("s3", "id1", "1000", b"{}", sig, now=999 - MAX_SKEW_S)
    assert not verify("s3", "id1", "1000", b"{}", "v1=ñ" + sig[4:], now=1000)
    assert not verify("s3", "id1", "later", b"{}", sig, now=1000)


def test_an_emergency_reaches_webhook_subscribers_in_the_emergency_lane() -> None:
    """A storm warning's webhook deliveries are emergencies as its SMS are (they were routine: behind any backlog)."""
    reg = Registry.model_validate({"subscribers": [{"name": "pdc", "url": "http://127.0.0.1:1/h", "secret": "s3"}]})
    requests = rules.for_event(storm(), directory(), reg)
    hooks = [r for r in requests if r.channel is ChannelKind.WEBHOOK]
    assert hooks and all(r.is_emergency for r in requests)
    routine = [r for r in rules.for_event(dossier(), directory(), reg) if r.channel is ChannelKind.WEBHOOK]
    assert routine and not any(r.is_emergency for r in routine)


@pytest.mark.parametrize("category", ["storm", "severe_cold", "disease_outbreak"])
def test_a_failed_emergency_broadcast_reaches_operators_and_webhooks_in_the_emergency_lane(category: str) -> None:
    """A storm warning that did not play on a cluster is told to its operators and to subscribers as an emergency,
    as the event's own priority says (it was routine: behind any dossier backlog); a routine one stays routine."""
    reg = Registry.model_validate({"subscribers": [
        {"name": "emergency-board", "url": "http://127.0.0.1:1/h", "secret": "s3",
         "event_types": ["vn.communebus.announcement.broadcast-failed.v1"]}]})
    urgent = rules.for_event(broadcast_failed(category=category), directory(), reg)
    assert {(r.recipient.ref, r.channel) for r in urgent} == {
        ("operator:c1", ChannelKind.SMS), ("subscriber:emergency-board", ChannelKind.WEBHOOK)}
    assert all(r.is_emergency for r in urgent)
    routine = rules.for_event(broadcast_failed(category="general"), directory(), reg)
    assert len(routine) == 2 and not any(r.is_emergency for r in routine)
    assert {r.notification_id for r in routine} == {r.notification_id for r in urgent}  # same rule, same ids


def test_deadline_alerts_fire_once_each_and_never_for_closed_dossiers() -> None:
    """Due-soon within one working day, overdue once the due day is over, each once; a closed dossier fires
    nothing."""
    due = datetime(2025, 11, 10, 10, 0, tzinfo=UTC)  # Monday 17:00 Vietnam
    day_over = datetime(2025, 11, 10, 17, 0, tzinfo=UTC)  # Tuesday 00:00 Vietnam
    d = TrackedDossier(dossier_code="X", commune="02269", province="08", procedure_code="1", due_at=due)
    assert deadlines.alerts_due(d, datetime(2025, 11, 7, 9, 0, tzinfo=UTC)) == []  # Friday 16:00: > 1 working day
    [soon] = deadlines.alerts_due(d, datetime(2025, 11, 7, 11, 0, tzinfo=UTC))  # Friday 18:00
    assert soon.kind is K.DUE_SOON
    d = deadlines.mark(d, soon)
    assert deadlines.alerts_due(d, datetime(2025, 11, 8, 0, 0, tzinfo=UTC)) == []
    assert deadlines.alerts_due(d, day_over - timedelta(microseconds=1)) == []  # 23:59:59.999999 on the due day
    [late] = deadlines.alerts_due(d, day_over)
    assert late.kind is K.OVERDUE and deadlines.alerts_due(deadlines.mark(d, late), due + timedelta(hours=12)) == []
    assert deadlines.alerts_due(d.model_copy(update={"is_open": False}), due + timedelta(days=3)) == []
    moved = deadlines.merge(deadlines.mark(d, late), d.model_copy(update={"due_at": due + timedelta(days=3)}))
    assert not moved.alerted_overdue


def test_deadline_alert_goes_to_officer_and_centre_head() -> None:
    """Overdue alerts are for the responsible officer and the centre head, staff audience."""
    d = TrackedDossier(dossier_code="X", commune="02269", province="08", procedure_code="1", officer_id="cb-01",
                       due_at=datetime(2025, 11, 10, 10, 0, tzinfo=UTC))
    [alert] = deadlines.alerts_due(d, datetime(2025, 11, 11, tzinfo=UTC))
    out = rules.for_alert(alert, directory())
    assert {r.recipient.ref for r in out} == {"officer:cb-01", "centre:head"}
    assert all(r.audience is Audience.STAFF and r.kind is K.OVERDUE for r in out)


def test_offsets_commit_only_past_fully_done_records() -> None:
    """The commit point never passes a record with notifications still pending."""
    t: OffsetTracker[str] = OffsetTracker()
    a, b = t.add("p", 10, 2), t.add("p", 11, 1)
    t.add("p", 12, 0)
    t.complete("p", b)
    assert t.take_committable() == {}
    t.complete("p", a)
    assert t.take_committable() == {}
    t.complete("p", a)
    assert t.take_committable() == {"p": 13}


def test_masks_hide_personal_data() -> None:
    """Phone, name and e-mail masks keep nothing that identifies a person."""
    assert mask_phone("0912345678") == "09******78"
    assert mask_name("Nguyễn Văn An") == "N. V. A."
    assert mask_email("lan@example.vn") == "l***@example.vn"


# --- poison records (issue 11): rules and templates never raise, subjects never carry a line break --------------

def test_a_line_break_in_a_parameter_never_reaches_the_subject() -> None:
    """A CR/LF (or other control) in any rendered value gives a one-line subject: no e-mail header injection."""
    for kind, by_locale in TEMPLATES.items():
        for locale in by_locale:
            params = {name: "X\r\nBcc: a@b.vn\u2028\u202e\x00" for name in (
                "dossier_code", "procedure", "due_date", "documents", "reason", "amount", "date", "village", "team",
                "households", "people", "dossiers", "accounts", "title", "clusters", "cluster", "announcement")}
            r = render(kind, locale, params)
            assert not any(c in r.subject for c in "\r\n\u2028\u202e\x00"), (kind, locale)
            assert "\r" not in r.text and "\x00" not in r.text


def test_for_record_derives_requests_and_tracking_from_a_valid_record() -> None:
    """for_record decodes, applies the rules and returns the tracked dossier, like for_event + deadlines.tracked."""
    from schemas import wire

    rec = wire.encode(dossier(status=2))
    derived = rules.for_record(rec.headers, rec.value, directory(), NO_SUBS, track=True)
    assert isinstance(derived, rules.Derived)
    assert [r.kind for r in derived.requests] == [K.DOSSIER_ACCEPTED] and derived.tracked is not None


def test_for_record_never_raises_for_a_poison_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Null value, non-UTF-8 header, bad JSON: a Rejection with reason; a bug in a rule: internal_error."""
    from schemas import wire
    from schemas.deadletter import Reason, Rejection

    rec = wire.encode(dossier(status=2))
    bad_header = [(k, b"\xff" if k == "ce_source" else v) for k, v in rec.headers]
    for headers, value, reason in [(rec.headers, None, Reason.NOT_JSON), (bad_header, rec.value, Reason.NOT_UTF8),
                                   (rec.headers, b"{nope", Reason.NOT_JSON)]:
        out = rules.for_record(headers, value, directory(), NO_SUBS)
        assert isinstance(out, Rejection) and out.reason is reason

    def broken(e: object) -> dict[str, str]:
        raise ValueError("Trần Văn Minh")

    import dataclasses

    first, *rest = rules.RULES[rec_type(rec)]
    monkeypatch.setitem(rules.RULES, rec_type(rec), (dataclasses.replace(first, params=broken), *rest))
    out = rules.for_record(rec.headers, rec.value, directory(), NO_SUBS)
    assert isinstance(out, Rejection) and out.reason is Reason.INTERNAL_ERROR
    assert out.message.startswith("internal error: ValueError at ") and "Trần" not in out.message


def rec_type(rec: object) -> str:
    return dict(rec.headers)["ce_type"].decode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [3, 7, 8])
def test_a_dossier_closed_without_a_due_date_closes_its_tracking(status: int) -> None:
    """Rejected, withdrawn or stopped with no due date: a closing view (the tracker drops the dossier and its
    alerts), where before there was none and the earlier due date kept alerting; a registered one without: None."""
    event = dossier(status=status)
    event = event.model_copy(update={"data": event.data.model_copy(update={"due_at": None})})
    closing = deadlines.tracked(event)
    assert closing is not None and not closing.is_open
    assert deadlines.alerts_due(closing, datetime(2030, 1, 1, tzinfo=UTC)) == []
    registered = dossier(status=1)
    assert deadlines.tracked(registered.model_copy(
        update={"data": registered.data.model_copy(update={"due_at": None})})) is None


def test_bounded_far_dates_do_not_overflow_deadlines_or_rules() -> None:
    """The latest and earliest times a record may carry (2100, 1975) go through rules and deadline arithmetic."""
    for due in (datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1975, 1, 1, tzinfo=UTC)):
        event = dossier(status=2, due_at=due, submitted_at=datetime(1975, 1, 1, tzinfo=UTC),
                        received_at=datetime(1975, 1, 1, tzinfo=UTC))
        [r] = rules.for_event(event, directory(), NO_SUBS)
        assert compose(r, 3).text
        tracked = deadlines.tracked(event)
        assert tracked is not None and deadlines.one_working_day_before(due) < due
        now = due - timedelta(hours=1) if due.year == 2100 else due + timedelta(days=1)  # alerts are timed by now
        assert deadlines.alerts_due(tracked, now)


def test_a_deadline_alert_for_a_dossier_due_long_ago_expires_unsent() -> None:
    """A province re-syncing last year's history: the tracker holds a dossier's open state a tick before its closing
    event arrives, and fires "overdue". That alert expires `ALERT_WINDOW` after the due day is over, so the
    dispatcher counts it expired and mails nobody (time audit: the officer and the centre head got it, for a dossier
    closed a year before); an overdue alert within the window, and a due-soon one before the due day is over, still
    go."""
    due = datetime(2025, 11, 5, 10, 0, tzinfo=UTC)  # Wednesday 17:00 Vietnam
    day_over = datetime(2025, 11, 5, 17, 0, tzinfo=UTC)  # Thursday 00:00 Vietnam
    d = TrackedDossier(dossier_code="TL-251101-0001", commune="02269", province="08", procedure_code="1",
                       officer_id="cb-01", due_at=due)
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    [replayed] = deadlines.alerts_due(d, now)
    stale = rules.for_alert(replayed, directory())
    assert stale and all(Dispatcher._expired(r, now) for r in stale)
    [fresh] = deadlines.alerts_due(d, day_over + timedelta(hours=2))
    assert fresh.kind is K.OVERDUE
    assert not any(Dispatcher._expired(r, day_over + timedelta(hours=2)) for r in rules.for_alert(fresh, directory()))
    assert all(r.expires_at == day_over + ALERT_WINDOW for r in rules.for_alert(fresh, directory()))
    [soon] = deadlines.alerts_due(d, due + timedelta(hours=2))  # 19:00 on the due day: not overdue yet
    assert soon.kind is K.DUE_SOON
    assert all(r.expires_at == day_over for r in rules.for_alert(soon, directory()))


def test_a_due_date_without_a_time_alerts_overdue_only_once_its_day_is_over() -> None:
    """Due on 10 November given as a date (local midnight): at 09:00 that day no overdue alert (a dossier finished
    that day is on time; time audit: the officer and the centre head were told it was overdue); from the midnight
    that ends the day, overdue; the tracker's index wakes exactly then (`next_alert_at`)."""
    due = datetime(2025, 11, 10, tzinfo=VIETNAM).astimezone(UTC)
    d = TrackedDossier(dossier_code="X", commune="02269", province="08", procedure_code="1", due_at=due,
                       alerted_due_soon=True)
    assert deadlines.alerts_due(d, due + timedelta(hours=9)) == []
    assert deadlines.next_alert_at(d) == due + timedelta(days=1)
    assert deadlines.alerts_due(d, due + timedelta(days=1, microseconds=-1)) == []
    [late] = deadlines.alerts_due(d, due + timedelta(days=1))
    assert late.kind is K.OVERDUE and late.due_at == due


def test_a_due_date_without_a_time_gets_its_due_soon_alert_the_working_day_before() -> None:
    """Due on Monday 10 November as a date: the due-soon alert fires on Friday (one working day before, as for any
    due date) and is still news until the due day is over (review: it fired at Monday's first minute and had
    expired at that same minute, so it was never sent)."""
    due = datetime(2025, 11, 10, tzinfo=VIETNAM).astimezone(UTC)
    d = TrackedDossier(dossier_code="X", commune="02269", province="08", procedure_code="1", officer_id="cb-01",
                       due_at=due)
    friday = datetime(2025, 11, 7, 9, 0, tzinfo=VIETNAM).astimezone(UTC)
    assert deadlines.next_alert_at(d) == datetime(2025, 11, 7, tzinfo=VIETNAM).astimezone(UTC)
    [soon] = deadlines.alerts_due(d, friday)
    requests = rules.for_alert(soon, directory())
    assert soon.kind is K.DUE_SOON and requests and not any(Dispatcher._expired(r, friday) for r in requests)
    monday_evening = datetime(2025, 11, 10, 20, 0, tzinfo=VIETNAM).astimezone(UTC)
    assert not any(Dispatcher._expired(r, monday_evening) for r in requests)
    assert all(Dispatcher._expired(r, due + timedelta(days=1)) for r in requests)


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)),
       st.floats(min_value=1, max_value=3600))
def test_a_tracker_clock_set_ahead_by_day_ending_in_ends_the_due_day_when_asked(now: datetime, seconds: float) -> None:
    """The broker tests' clock (`day_ending_in`): a dossier due at the tracker's time is overdue `seconds` from now
    and not before, one due a day earlier at once; `NOTIFY_DEADLINE_CLOCK_AHEAD_S` takes the value it gives."""
    ahead, tracker_now = day_ending_in(seconds, now)
    assert 0 <= DeadlineSettings(clock_ahead_s=ahead).clock_ahead_s < 86_400
    d = TrackedDossier(dossier_code="X", commune="02269", province="08", procedure_code="1", due_at=tracker_now,
                       alerted_due_soon=True)
    overdue_at = deadlines.next_alert_at(d)
    assert overdue_at is not None and abs((overdue_at - tracker_now).total_seconds() - seconds) < 1e-3
    earlier = d.model_copy(update={"due_at": tracker_now - timedelta(days=1)})
    assert [a.kind for a in deadlines.alerts_due(earlier, tracker_now)] == [K.OVERDUE]


def test_the_tracker_clock_runs_ahead_by_its_setting_and_not_otherwise() -> None:
    """`NOTIFY_DEADLINE_CLOCK_AHEAD_S` moves the tracker's clock (tests, drills); unset, it is the wall clock."""
    before = datetime.now(UTC)
    ahead, wall = clock_of(DeadlineSettings(clock_ahead_s=3600))(), clock_of(DeadlineSettings())()
    after = datetime.now(UTC)
    assert before <= wall <= after and before + timedelta(hours=1) <= ahead <= after + timedelta(hours=1)
