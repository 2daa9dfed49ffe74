"""The claims protocol (`services.gateway.claims`): one holder at a time, one answer per key, the same verdict on
every instance, and the same after compaction (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.topics import GATEWAY_CLAIMS
from services.gateway.claims import (
    Answer,
    ClaimRecord,
    ClaimTable,
    Held,
    Stored,
    Ticket,
    fold,
    scope,
    verdict,
)
from services.gateway.idempotency import idempotency_claim, idempotency_scope, nonce_claim
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import Clock

pytestmark = pytest.mark.unit
LEASE = 60.0
KEEP = 3600.0
OK = Answer(202, {"accepted": 1, "ids": ["e-1"]})


def replay(log: list[ClaimRecord]) -> Held | None:
    held = None
    for rec in log:
        held = fold(held, rec)
    return held


# A step: (claimant 0-3, seconds since the previous step, what the claimant does next if it wins)
steps = st.lists(st.tuples(st.integers(0, 3), st.floats(0, 90), st.sampled_from(["done", "released", "nothing"])),
                 max_size=25)


@settings(max_examples=300, deadline=None)
@given(steps, st.booleans())
def test_one_holder_at_a_time_and_everyone_agrees(script: list[tuple[int, float, str]], same_request: bool) -> None:
    """Claims from 4 instances at any times: winners never overlap in time, each instance's verdict (read up to its
    own claim) is what anyone reading that prefix computes, a key answered gives that answer to the same request
    only, and another request is refused only while the key is held."""
    log: list[ClaimRecord] = []
    now = 0.0
    winners: list[tuple[float, float]] = []  # (from, until) of each winning lease or answer
    answered: tuple[str, Stored] | None = None
    for n, (who, gap, then) in enumerate(script):
        now += gap
        fp = "same" if same_request else f"fp{who}"
        ticket = Ticket("idem:s:k", f"c{n}", fp)
        log.append(ClaimRecord(ticket.key, "claimed", ticket.claim, fp, now, now + LEASE))
        said = verdict(replay(log), ticket)
        assert said == verdict(replay(list(log)), ticket)  # deterministic: another instance, same prefix
        if said.outcome == "won":
            assert all(until <= now for _, until in winners), "two holders at once"
            if then == "done":
                log.append(ClaimRecord(ticket.key, "done", ticket.claim, fp, now, now + KEEP, OK))
                winners.append((now, now + KEEP))
                answered = (fp, Stored.of(OK))
            elif then == "released":
                log.append(ClaimRecord(ticket.key, "released", ticket.claim, fp, now, now))
            else:
                winners.append((now, now + LEASE))
        elif said.outcome == "answered":
            assert answered == (fp, said.answer)
        elif said.outcome == "other_request":
            assert not same_request


LAG = int(GATEWAY_CLAIMS.config["min.compaction.lag.ms"]) / 1000


def compact(log: list[ClaimRecord], now: float) -> list[ClaimRecord]:
    """What log compaction may leave at `now`: a record older than the topic's compaction lag goes when a later
    record has its record key."""
    last = {rec.record_key: i for i, rec in enumerate(log)}
    return [rec for i, rec in enumerate(log) if last[rec.record_key] == i or rec.at >= now - LAG]


def test_a_lease_ends_before_compaction_may_touch_its_records() -> None:
    """The longest claim lease is shorter than the claims topic's compaction lag (what `compact` relies on)."""
    assert GatewaySettings.model_fields["claim_lease_s"].metadata[-1].le < LAG


@settings(max_examples=300, deadline=None)
@given(steps, st.floats(0, 2 * KEEP))
def test_compaction_changes_no_verdict(script: list[tuple[int, float, str]], later: float) -> None:
    """Any log of claims and outcomes, compacted: a claim made after it learns the same as from the full log
    (an answer is never compacted away by a later claim, as it would be if claims shared the answer's key)."""
    log: list[ClaimRecord] = []
    now = 0.0
    for n, (who, gap, then) in enumerate(script):
        now += gap
        ticket = Ticket("k", f"c{n}", f"fp{who % 2}")
        log.append(ClaimRecord("k", "claimed", ticket.claim, ticket.fingerprint, now, now + LEASE))
        if verdict(replay(log), ticket).outcome == "won" and then != "nothing":
            log.append(ClaimRecord("k", then, ticket.claim, ticket.fingerprint, now,  # type: ignore[arg-type]
                                   now + KEEP if then == "done" else now, OK if then == "done" else None))
    late = now + later
    for fp in ("fp0", "fp1"):
        probe = ClaimRecord("k", "claimed", "probe", fp, late, late + LEASE)
        ticket = Ticket("k", "probe", fp)
        assert verdict(replay([*log, probe]), ticket) == verdict(replay([*compact(log, late), probe]), ticket)


def test_record_round_trip_and_foreign_records() -> None:
    """A claim record decodes to itself; a record that is none (bad JSON, missing fields) is a ValueError."""
    rec = ClaimRecord("idem:s:k", "done", "c1", "fp", 1.5, 99.0, OK)
    assert ClaimRecord.decode(rec.encode()) == rec
    for junk in (b"", b"{}", b"[1]", b'{"state":"claimed"}', b"\xff", rec.encode().replace(b"done", b"gone")):
        with pytest.raises(ValueError):
            ClaimRecord.decode(junk)


async def test_memory_claims_answer_in_flight_answered_and_other_request() -> None:
    """In one process: the first claim wins; meanwhile 409-like in_flight; after settle the answer; another
    fingerprint is other_request; after a release the key is free; after expiry too."""
    clock = Clock(0.0)
    claims = MemoryClaims(clock)
    first = await claims.claim("k", "fp", LEASE)
    assert first.outcome == "won" and first.ticket is not None
    assert (await claims.claim("k", "fp", LEASE)).outcome == "in_flight"
    assert (await claims.claim("k", "other", LEASE)).outcome == "other_request"
    await claims.settle(first.ticket, OK, KEEP, sealed=False)
    assert (await claims.claim("k", "fp", LEASE)).answer == Stored.of(OK)
    clock.now = KEEP + 1
    assert (await claims.claim("k", "other", LEASE)).outcome == "won"
    second = await claims.claim("k2", "fp", LEASE)
    assert second.ticket is not None
    await claims.release(second.ticket)
    assert (await claims.claim("k2", "fp", LEASE)).outcome == "won"


def test_an_idempotency_key_is_claimed_by_its_digest_not_in_clear() -> None:
    """The claim (a compacted topic's record key for 48 hours) names the source and the key's SHA-256: the
    integrator's key text (a dossier code, a CCCD number) is not kept in clear; the same key claims the same."""
    claim = idempotency_claim("province", "hs-012345678901")
    assert claim == idempotency_claim("province", "hs-012345678901") != idempotency_claim("other", "hs-012345678901")
    assert claim.startswith("idem:province:") and "012345678901" not in claim and len(claim) == 14 + 64


# A step for the key counts: (key 0-5, source 0-1, what happens to it, seconds since the previous step)
key_steps = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1), st.sampled_from(["claimed", "done", "released"]),
                               st.floats(0, 4000), st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(key_steps)
def test_each_sources_live_keys_are_counted_exactly(script: list[tuple[int, int, str, float, bool]]) -> None:
    """Any sequence of claims, answers, releases, expiries and prunes, over Idempotency-Keys and nonces of two sources:
    `live(scope)` is always the number of that source's keys, or of its nonces, the table holds (what bounds them)."""
    table = ClaimTable(1024)
    now = 0.0
    claims: dict[str, str] = {}
    for n, (k, source, state, gap, prune) in enumerate(script):
        now += gap
        key = idempotency_claim(f"s{source}", f"k{k}") if k < 4 else nonce_claim(f"s{source}:{k:x}")
        if state == "claimed":
            claims[key] = f"c{n}"
        rec = ClaimRecord(key, state, claims.get(key, "none"), "fp", now,  # type: ignore[arg-type]
                          now + (KEEP if state == "done" else LEASE if state == "claimed" else 0), OK)
        table.apply(rec)
        if prune:
            table.prune(now)
        for source_id in ("s0", "s1"):
            for key_scope in (idempotency_scope(source_id), f"nonce:{source_id}"):
                held = [key for key in table.held if key.startswith(key_scope + ":")]
                assert table.live(key_scope) == len(held)
        assert scope(nonce_claim("s0:ab")) == "nonce:s0" and scope("other:n4") is None


def test_a_release_after_its_lease_lapsed_does_not_compact_away_the_retrys_answer() -> None:
    """A gateway paused past its lease (LeaseLapsed: its transaction aborted) releases its ticket after a retry on
    another instance won the key and answered: that release shares the answer's record key, so compaction keeps it
    and drops the answer; a reader restored from the compacted topic then lets the key be won again (published
    twice)."""
    a = Ticket("k", "a", "fp")
    log = [ClaimRecord("k", "claimed", "a", "fp", 0.0, LEASE),
           ClaimRecord("k", "claimed", "b", "fp", LEASE + 1, 2 * LEASE + 1),  # the retry, past a's lease: wins
           ClaimRecord("k", "done", "b", "fp", LEASE + 1, LEASE + 1 + 24 * KEEP, OK),  # its transaction commits
           ClaimRecord("k", "released", a.claim, "fp", LEASE + 2, LEASE + 2)]  # a resumes: LeaseLapsed, release
    late = LEASE + 3 + LAG + 10
    probe = ClaimRecord("k", "claimed", "probe", "fp", late, late + LEASE)
    ticket = Ticket("k", "probe", "fp")
    assert verdict(replay([*log, probe]), ticket).outcome == "answered"
    assert verdict(replay([*compact(log, late), probe]), ticket).outcome == "answered"


def test_a_release_after_its_own_answer_committed_leaves_the_key_answered() -> None:
    """A request whose commit reached the broker but whose answer came after `kafka_timeout_s` (a slow EndTxn, or the
    gateway paused while it was on its way: the timeout fires first on resume) is answered 503 and its ticket
    released; the transaction committed all the same. The release must not free the answered key, or the client's
    retry wins it and publishes the events again; nor may compaction make it so."""
    log = [ClaimRecord("k", "claimed", "a", "fp", 0.0, LEASE),
           ClaimRecord("k", "done", "a", "fp", 1.0, 1.0 + 24 * KEEP, OK),  # committed, its answer late
           ClaimRecord("k", "released", "a", "fp", 2.0, 2.0)]  # the handler's release after the timeout's 503
    ticket = Ticket("k", "retry", "fp")
    for late in (3.0, 3.0 + LAG + 10):
        probe = ClaimRecord("k", "claimed", "retry", "fp", late, late + LEASE)
        assert verdict(replay([*log, probe]), ticket).outcome == "answered"
        assert verdict(replay([*compact(log, late), probe]), ticket).outcome == "answered"
