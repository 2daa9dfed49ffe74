"""The pure rules of `notify-dlq list|replay` (ADR 0033): what a notify dead letter says, whether it can be sent again,
and the record a replay writes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.notification import ChannelKind
from services.cli.notify_letters import NotifyFilters, letter, matches, replayed, why_not
from services.notify import deadletters, replays, rules
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier, storm

pytestmark = pytest.mark.unit
HOOKS = Registry.model_validate(
    {"subscribers": [{"name": "prov-08", "url": "https://example.gov.vn/h", "secret": "s"}]})
AT = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
TOPIC = "commune.dlq.notify"


def headers(reason: str = "http_401", omitted: list[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    return [("dlq.reason", reason.encode()), ("dlq.attempts", b"1"), ("dlq.rejected.at", AT.isoformat().encode()),
            *(omitted or [])]


def letters_of(event_id: str) -> dict[ChannelKind, tuple[bytes, list[tuple[str, bytes]]]]:
    """Each request of a dossier event (an SMS to the applicant, a webhook) as notify dead-letters it."""
    return {r.channel: deadletters.bounded(r) for r in rules.for_event(dossier(event_id), directory(), HOOKS)}


def test_a_dead_letter_is_read_with_its_reason_and_replayed_under_a_new_stable_id_due_at_once() -> None:
    value, omitted = letters_of("l-1")[ChannelKind.WEBHOOK]
    d = letter(3, 17, value, headers(omitted=omitted))
    assert (d.reason, d.attempts, d.rejected_at, d.position, d.omitted) == ("http_401", 1, AT, "3:17", ())
    assert why_not(d, AT) is None
    nid, record = replayed(d, TOPIC)
    assert nid != d.request.notification_id and len(nid) == 32
    assert replayed(d, TOPIC)[0] == nid  # the same for every replay of that letter
    assert replayed(letter(3, 18, value, headers()), TOPIC)[0] != nid  # another letter of the same request: another
    request = replays.request_of(record)  # as notify reads it
    assert request.notification_id == nid and request.not_before is None and request.payload == d.request.payload
    assert request.model_dump(exclude={"notification_id"}) == d.request.model_dump(exclude={"notification_id"})


@pytest.mark.parametrize("reason", ["retries_exhausted:ServerTimeoutError", "retries_exhausted:http_503",
                                    "retries_exhausted:ClientOSError"])
def test_a_letter_given_up_after_failures_the_provider_may_have_taken_is_replayed_under_the_original_key(
        reason: str) -> None:
    """A timeout (or a 5xx, a cut connection) after the request left may have delivered the message: the replay keeps
    the original's delivery key, so an idempotent provider that has the message does not send it again; the replay
    of that replay (dead-lettered in turn) keeps the very first one."""
    for channel, (value, omitted) in letters_of("l-k").items():
        d = letter(2, 5, value, headers(reason, omitted))
        nid, record = replayed(d, TOPIC)
        request = replays.request_of(record)
        assert request.notification_id == nid != d.request.notification_id, channel
        assert request.delivery_key == d.request.notification_id, channel
        again = letter(2, 9, request.model_dump_json().encode(), headers(reason))
        assert replays.request_of(replayed(again, TOPIC)[1]).delivery_key == d.request.notification_id


@pytest.mark.parametrize("reason", ["http_401", "http_400", "smtp_recipient_refused", "zns_error_-124",
                                    "internal_error", "unopenable", "retries_exhausted"])
def test_a_letter_the_provider_refused_is_replayed_as_a_new_message(reason: str) -> None:
    """A refusal (or a bug here) sent nothing: the replay is a new message under its new id (an idempotent provider
    would answer a key it has seen with its refusal again); a replay of a replay that had kept a key keeps none."""
    value, omitted = letters_of("l-r")[ChannelKind.WEBHOOK]
    d = letter(1, 4, value, headers(reason, omitted))
    nid, record = replayed(d, TOPIC)
    request = replays.request_of(record)
    assert request.delivery_key == nid and request.idempotency_key is None
    kept = d.request.model_copy(update={"idempotency_key": "first-key"}).model_dump_json().encode()
    assert replays.request_of(replayed(letter(1, 6, kept, headers(reason)), TOPIC)[1]).delivery_key != "first-key"


def test_an_sms_letter_holds_no_clear_contact_and_its_replay_none_either() -> None:
    value, omitted = letters_of("l-2")[ChannelKind.SMS]
    d = letter(0, 1, value, headers(omitted=omitted))
    r = d.request.recipient
    assert (r.phone, r.email, r.zalo_user_id) == (None, None, None)
    assert b"0912345678" in json.dumps(rules.for_event(dossier("l-2"), directory(), HOOKS)[0].model_dump(
        mode="json")).encode()  # the request had it
    assert b"0912345678" not in value and b"0912345678" not in replayed(d, TOPIC)[1]


@pytest.mark.parametrize(("omitted", "channel", "why"), [
    (b"payload", ChannelKind.WEBHOOK, "incomplete (payload left out for size)"),
    (b"params", ChannelKind.SMS, "incomplete (params left out for size)"),
    (b"params,recipient", ChannelKind.SMS, "incomplete (params, recipient left out for size)"),
])
def test_a_letter_left_incomplete_for_its_size_cannot_be_replayed(omitted: bytes, channel: ChannelKind,
                                                                    why: str) -> None:
    value, _ = letters_of("l-3")[channel]
    assert why_not(letter(0, 1, value, headers(omitted=[("dlq.omitted", omitted)])), AT) == why


def test_a_letter_whose_times_name_no_offset_is_refused_not_a_type_error() -> None:
    """A record notify did not write, with a naive `expires_at`: refused with a ValueError (counted), never compared
    with the clock (review: `list` and `replay` ended in a TypeError, and one such record blocked every replay)."""
    value, _ = letters_of("l-7")[ChannelKind.SMS]
    body = json.loads(value)
    body["expires_at"] = "2030-01-01T00:00:00"
    with pytest.raises(ValueError, match="offset"):
        letter(0, 1, json.dumps(body).encode(), headers())
    with pytest.raises(ValueError, match="offset"):
        replays.request_of(json.dumps(body).encode())


def test_a_replay_carries_no_clear_contact_even_from_a_letter_that_had_one() -> None:
    """A letter notify did not write, with a phone in clear: the replay and what notify reads of it hold none."""
    value, _ = letters_of("l-8")[ChannelKind.SMS]
    body = json.loads(value)
    body["recipient"]["phone"] = "0912999888"
    _, record = replayed(letter(0, 1, json.dumps(body).encode(), headers()), TOPIC)
    assert b"0912999888" not in record
    body["notification_id"] = "x" * 32
    assert replays.request_of(json.dumps(body).encode()).recipient.phone is None


def test_a_letter_past_its_expiry_cannot_be_replayed() -> None:
    value, _ = letters_of("l-4")[ChannelKind.SMS]
    body = json.loads(value)
    body["expires_at"] = (AT - timedelta(minutes=1)).isoformat()
    assert why_not(letter(0, 1, json.dumps(body).encode(), headers()), AT) == "expired"


def test_a_letter_whose_times_notify_refuses_is_not_replayed() -> None:
    """A letter (written by hand) expiring in 9999: notify refuses its replay at the door (an `invalid_field` skip),
    so it would be marked replayed and lost; it is listed as one that cannot be (review)."""
    value, _ = letters_of("l-9")[ChannelKind.SMS]
    body = json.loads(value)
    body["expires_at"] = "9999-12-31T00:00:00+00:00"
    assert why_not(letter(0, 1, json.dumps(body).encode(), headers()), AT) == "its times out of range"


def test_filters_match_a_reason_or_its_start_the_channel_the_time_and_the_recipient() -> None:
    value, _ = letters_of("l-5")[ChannelKind.SMS]
    d = letter(0, 1, value, headers("retries_exhausted:http_503"))
    ref = d.request.recipient.ref
    assert matches(d, NotifyFilters(recipient=ref)) and not matches(d, NotifyFilters(recipient="subscriber:prov-08"))
    assert not matches(d, NotifyFilters(recipient=ref[:-1]))  # whole, not its start: prov-1 is not prov-10
    assert matches(d, NotifyFilters(reason="retries_exhausted"))
    assert matches(d, NotifyFilters(reason="retries_exhausted:http_503"))
    assert not matches(d, NotifyFilters(reason="retries"))
    assert not matches(d, NotifyFilters(channel=ChannelKind.WEBHOOK))
    assert matches(d, NotifyFilters(since=AT, until=AT)) and not matches(d, NotifyFilters(since=AT + timedelta(1)))


@given(value=st.one_of(st.binary(max_size=300), st.just(letters_of("l-6")[ChannelKind.SMS][0])),
       reason=st.text(max_size=20), attempts=st.binary(max_size=8), at=st.binary(max_size=40))
def test_any_record_is_read_as_a_dead_letter_or_refused_with_a_value_error(value: bytes, reason: str, attempts: bytes,
                                                                           at: bytes) -> None:
    """A record on the DLQ that notify did not write (or a newer one's) is counted, never a traceback."""
    with contextlib.suppress(ValueError):
        letter(0, 0, value, [("dlq.reason", reason.encode()), ("dlq.attempts", attempts), ("dlq.rejected.at", at)])


def test_the_replay_summary_counts_letters_another_replay_wrote_meanwhile_as_already_replayed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three matching letters, one replayed before the listing; of the two left, another replay commits one between
    this one's listing and its writer's start, so the writer leaves it out (`replay_each`'s second read). The summary
    counts it as already replayed (it was counted nowhere), and counts the letter given up after timeouts, which keeps
    its original key."""
    from typer.testing import CliRunner

    from schemas.replay import replay_key
    from services.cli import notify_dlq
    from services.cli.main import app

    value, omitted = letters_of("l-s")[ChannelKind.WEBHOOK]
    letters = [letter(0, n, value, headers(reason, omitted))
               for n, reason in ((1, "http_401"), (2, "retries_exhausted:TimeoutError"), (3, "http_401"))]
    done = {replay_key(TOPIC, 0, 1, letters[0].digest)}

    async def listing(*_: object) -> notify_dlq.Listing:
        return notify_dlq.Listing(TOPIC, letters, done, 0)

    async def replay(_conn: object, _ns: str, todo: list[object], _topic: str, *_: object) -> list[object]:
        assert todo == letters[1:]
        return todo[:1]  # letters[2] was written by another replay meanwhile

    monkeypatch.setattr(notify_dlq, "notify_letters", listing)
    monkeypatch.setattr(notify_dlq, "replay", replay)
    result = CliRunner().invoke(app, ["notify-dlq", "replay"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert ("replayed 1 dead letter; 2 matching were already replayed; 1 under the original's Idempotency-Key"
            in " ".join(result.output.split())), result.output


def test_a_replay_interrupted_says_how_many_were_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during `notify-dlq replay`: exit 130 and one line saying how many were replayed and what to do; it ended
    with no word of what it did (audit)."""
    from typer.testing import CliRunner

    from services.cli import notify_dlq
    from services.cli.main import app

    value, omitted = letters_of("l-s")[ChannelKind.WEBHOOK]
    letters = [letter(0, n, value, headers("http_401", omitted)) for n in range(3)]

    async def listing(*_: object) -> notify_dlq.Listing:
        return notify_dlq.Listing(TOPIC, letters, set(), 0)

    async def replay(_conn: object, _ns: str, todo: list[object], _topic: str,
                     progress: Callable[[int], None]) -> list[object]:
        progress(2)  # one transaction of two letters committed, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(notify_dlq, "notify_letters", listing)
    monkeypatch.setattr(notify_dlq, "replay", replay)
    result = CliRunner().invoke(app, ["notify-dlq", "replay"], env={"COLUMNS": "300"})
    assert result.exit_code == 130, result.output
    assert "interrupted: 2 of 3 dead letters replayed; the transaction under way, if any, was aborted" in \
        " ".join(result.output.split()), result.output


def test_a_replay_writes_the_emergencies_letters_before_the_routine_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routine letters and, given up among them, a storm warning's: the replay writes the storm warning's first, the
    routine ones after it in their order, each once (notify reads a replay partition in order: written in offset order,
    the storm warning was read only after the routine replays ahead of it, audit)."""
    import asyncio

    from services.cli import notify_dlq
    from services.common.settings import KafkaConnection

    routine = [letter(0, n, letters_of(f"l-o{n}")[ChannelKind.SMS][0], headers()) for n in range(3)]
    [urgent, *_] = rules.for_event(storm("l-storm"), directory(), HOOKS)
    value, omitted = deadletters.bounded(urgent)
    storm_letter = letter(0, 3, value, headers("retries_exhausted:http_503", omitted))
    written: list[object] = []

    async def visible(_conn: object, topics: list[str]) -> dict[str, int]:
        return {t: 6 for t in topics}

    async def replay_each(_conn: object, _ns: str, _client: str, dlq: str, todo: list[object],
                          redrive: object, *_: object) -> list[object]:
        written.extend(todo)
        return todo

    monkeypatch.setattr(notify_dlq, "partition_counts", visible)
    monkeypatch.setattr(notify_dlq, "replay_each", replay_each)
    letters = [routine[0], routine[1], storm_letter, routine[2]]
    assert asyncio.run(notify_dlq.replay(KafkaConnection(), "", letters, TOPIC)) == written
    assert written == [storm_letter, *routine]


@pytest.mark.parametrize("shown", [False, True], ids=["masked", "--show-personal-data"])
def test_notify_dlq_list_masks_a_personal_number_in_an_event_id(monkeypatch: pytest.MonkeyPatch, shown: bool) -> None:
    """A producer whose event ids hold a CCCD: `notify-dlq list --json` printed it in clear, where `trace` and `dlq
    list` mask it (privacy audit); `--show-personal-data` shows it, as theirs does."""
    from typer.testing import CliRunner

    from services.cli import notify_dlq
    from services.cli.main import app

    value, omitted = letters_of("/citizens/079912345678")[ChannelKind.WEBHOOK]
    found = letter(0, 7, value, headers(omitted=omitted))

    async def listing(*_: object) -> notify_dlq.Listing:
        return notify_dlq.Listing(TOPIC, [found], set(), 0)

    monkeypatch.setattr(notify_dlq, "notify_letters", listing)
    result = CliRunner().invoke(app, ["notify-dlq", "list", "--json", *(["--show-personal-data"] if shown else [])])
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert row["event_id"] == ("/citizens/079912345678" if shown else "/citizens/07********78")
    assert row["notification_id"] == (found.request.notification_id if shown else None)  # a hash of the id
    assert row["dlq"] == "0:7" and row["reason"] == "http_401"


def test_notify_dlq_until_a_date_alone_takes_that_whole_day() -> None:
    """`notify-dlq --since 2026-12-01 --until 2026-12-01`: that whole day in Vietnam (it stopped at its 00:00)."""
    from services.cli.notify_dlq import _filters

    filters = _filters(None, None, "2026-12-01", "2026-12-01", None)
    assert (filters.since, filters.until) == (datetime(2026, 11, 30, 17, 0, tzinfo=UTC),
                                              datetime(2026, 12, 1, 16, 59, 59, 999999, tzinfo=UTC))
