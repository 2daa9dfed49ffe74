"""Limits before parsing: credentials before the body, the body counted while it streams, intake's record limit,
and absurd headers or input answered with a 4xx, never a 500 (in process, through the ASGI interface)."""

from __future__ import annotations

import asyncio
import resource
import tempfile
import threading
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from services.common.sparse import EVERY_S, Sparse
from services.gateway import handler
from services.gateway.batch import MAX_ERRORS
from services.gateway.handler import INLINE_CHECK_BYTES
from services.gateway.settings import GatewaySettings
from services.gateway.telemetry import REFUSED
from services.intake.normalise import DEFAULT_MAX_RECORD_BYTES
from services.intake.outcome import MAX_PROBLEMS
from services.intake.settings import IntakeSettings
from tests.gateway.asgi import API_KEY, Body, Recording, app, call
from tests.samples import canonical_dossier, with_data

pytestmark = pytest.mark.unit
KEY = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json")]


@pytest.mark.parametrize("headers", [
    [(b"x-api-key", b"wrong")],
    [],
    [(b"x-source-id", b"nobody"), (b"x-signature", b"t=1764000000,v1=00")],
    [(b"x-source-id", b"province"), (b"x-signature", b"t=1000,v1=00")],  # stale
    [(b"x-source-id", b"province"), (b"x-signature", b"t=" + b"9" * 5000 + b",v1=00")],
])
async def test_credentials_are_checked_before_a_byte_of_the_body_is_read(headers: list[tuple[bytes, bytes]]) -> None:
    """Wrong or missing credentials, an unknown signing source, a stale or absurd timestamp: 401, body unread."""
    body, pub = Body(chunks=None), Recording()
    answer = await call(app(pub), headers, body)
    assert answer.status == 401 and answer.json()["error"] == "unauthenticated"
    assert body.read == 0 and pub.sent == []


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    """A never-ending chunked body: 413 after the limit plus one chunk, the connection to be closed."""
    body, pub = Body(size=16 * 1024, chunks=None), Recording()
    answer = await call(app(pub, max_body_bytes=64 * 1024), KEY, body)
    assert answer.status == 413 and answer.json()["error"] == "too_large"
    assert answer.headers["connection"] == "close"
    assert body.read == 64 // 16 + 1 and pub.sent == []


async def test_a_body_at_the_limit_is_read_whole() -> None:
    """The limit is inclusive: a body of exactly the limit is read whole and checked (400: it holds no records)."""
    body = Body(size=16 * 1024, chunks=4, data=b" " * (16 * 1024))
    answer = await call(app(max_body_bytes=64 * 1024), KEY, body)
    assert answer.status == 400 and body.read == 4


@pytest.mark.parametrize("length", [b"99999999999", b"9" * 5000])
async def test_a_declared_length_over_the_limit_is_refused_unread(length: bytes) -> None:
    """Content-Length over the limit (or of 5,000 digits): 413 before credentials, body unread."""
    body = Body(chunks=None)
    answer = await call(app(), [*KEY, (b"content-length", length)], body)
    assert answer.status == 413 and body.read == 0


def test_the_record_limit_is_intakes_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the gateway's per-record limit is intake's constant; INTAKE_MAX_RECORD_BYTES moves both."""
    assert GatewaySettings().max_record_bytes == IntakeSettings().max_record_bytes == DEFAULT_MAX_RECORD_BYTES
    monkeypatch.setenv("INTAKE_MAX_RECORD_BYTES", "4096")
    assert GatewaySettings().max_record_bytes == IntakeSettings().max_record_bytes == 4096
    monkeypatch.setenv("GATEWAY_MAX_RECORD_BYTES", "8192")
    assert GatewaySettings().max_record_bytes == 8192


async def test_a_record_over_intakes_limit_is_refused_within_the_body_limit() -> None:
    """A 1 MiB + 1 record in a 10 MiB body: 422 payload_too_large (intake would dead-letter it), nothing published."""
    event = orjson.dumps(with_data(canonical_dossier(), note="n" * DEFAULT_MAX_RECORD_BYTES))
    pub = Recording()
    answer = await call(app(pub), KEY, event)
    assert answer.status == 422 and pub.sent == []
    assert [e["reason"] for e in answer.json()["errors"]] == ["payload_too_large"]
    small = orjson.dumps(canonical_dossier("fits"))
    assert (await call(app(pub), KEY, small)).status == 202 and len(pub.sent) == 1


HEADER_NAMES = [b"x-api-key", b"x-source-id", b"x-signature", b"x-commune-code", b"idempotency-key",
                b"content-length", b"content-type", b"transfer-encoding"]
header_value = st.one_of(st.binary(max_size=300), st.just(b"9" * 5000), st.just(b"t=" + b"9" * 5000 + b",v1=0"),
                         st.binary(min_size=20_000, max_size=20_000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_value), max_size=6),
       st.binary(max_size=2000), st.binary(max_size=200))
async def test_absurd_headers_and_input_get_a_4xx_never_a_500(headers: list[tuple[bytes, bytes]], body: bytes,
                                                               query: bytes) -> None:
    """Any header values (binary, huge, 5,000 digits), query and body: the answer is below 500, nothing published."""
    pub = Recording()
    answer = await call(app(pub), headers, body, query=query)
    assert 400 <= answer.status < 500 or (answer.status == 202 and len(pub.sent) == 1), answer.status


async def test_an_answer_lists_a_bounded_number_of_problems() -> None:
    """Records each with a hundred problems: the 422 lists at most `MAX_PROBLEMS` per record plus one that counts
    the rest, and at most `MAX_ERRORS` in all; before, records with thousands of bad list items got an answer 77
    times the size of their request (129 MB for a 1.7 MB body), built on the event loop."""
    record = canonical_dossier()
    record["data"] = {**record["data"], **{f"extra_{i}": i for i in range(100)}}
    body = orjson.dumps([record] * 60)
    answer = await call(app(Recording()), KEY, Body(size=len(body), chunks=1, data=body))
    assert answer.status == 422
    errors = answer.json()["errors"]
    assert len(errors) == MAX_ERRORS and len(answer.body) < MAX_ERRORS * 200  # whatever the request holds
    first = [e for e in errors if e["index"] == 0]
    assert len(first) == MAX_PROBLEMS + 1 and "more problems in this record are not listed" in first[-1]["message"]
    assert answer.json()["message"] == ("60 of 60 records rejected; nothing was published "
                                        f"({60 * (MAX_PROBLEMS + 1) - MAX_ERRORS} more problems not listed)")


async def test_a_large_body_is_checked_off_the_event_loop() -> None:
    """A body over `INLINE_CHECK_BYTES` is checked in a worker thread: the loop stays free meanwhile."""
    record = canonical_dossier()
    body = orjson.dumps([canonical_dossier(f"big-{i}")  # distinct ids: one event twice is refused
                         for i in range(INLINE_CHECK_BYTES // len(orjson.dumps(record)) + 50)])
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        answer = await call(app(Recording()), KEY, Body(size=len(body), chunks=1, data=body))
    finally:
        ticker.cancel()
    assert answer.status == 202 and ticks > 10


async def test_large_bodies_are_checked_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four large bodies posted at once are parsed one after another (`CHECK_THREADS`): parsing takes 15-40 times a
    body's size in memory and the GIL lets only one run anyway. Before: anyio's 40 threads, all four at once."""
    running, most = 0, 0
    lock = threading.Lock()
    real_plan = handler.plan

    def plan(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.2)  # long enough for the others to have started, were they allowed to
            return real_plan(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(handler, "plan", plan)
    record = canonical_dossier()
    body = orjson.dumps([canonical_dossier(f"big-{i}")  # distinct ids: one event twice is refused
                         for i in range(INLINE_CHECK_BYTES // len(orjson.dumps(record)) + 50)])
    gateway = app(Recording())
    answers = await asyncio.gather(*(call(gateway, KEY, Body(size=len(body), chunks=1, data=body)) for _ in range(4)))
    assert [a.status for a in answers] == [202] * 4
    assert most == handler.CHECK_THREADS == 1


async def test_a_flood_of_refused_credentials_is_counted_whole_and_logged_sparingly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """300 requests with a wrong API key: each a 401 and counted, one `gateway.unauthenticated` line (audit: a line
    each, 133-172 bytes, at whatever rate anyone cares to send them); once `sparse.EVERY_S` has passed, the next
    line says how many it stands for."""
    now = [1000.0]
    monkeypatch.setattr(handler, "UNAUTHENTICATED_LOGGED", Sparse(clock=lambda: now[0]))
    refused = REFUSED.labels("unauthenticated")._value.get()
    application = app()
    with capture_logs() as logs:
        for _ in range(300):
            assert (await call(application, [(b"x-api-key", b"wrong")], b"{}")).status == 401
        now[0] += EVERY_S
        assert (await call(application, [(b"x-api-key", b"wrong")], b"{}")).status == 401
    assert REFUSED.labels("unauthenticated")._value.get() - refused == 301
    lines = [e for e in logs if e["event"] == "gateway.unauthenticated"]
    assert [(e["why"], e["refused_since_last"]) for e in lines] == [("the API key is not valid", 1),
                                                                    ("the API key is not valid", 300)]


async def test_a_body_the_full_disk_cannot_hold_is_answered_busy_not_a_bug() -> None:
    """A body past `SPILL_BYTES` goes to a temporary file; with the disk full (a per-file size limit: RLIMIT_FSIZE,
    EFBIG as ENOSPC) it is answered 503 busy, retry later, and the folder and cause logged (before: 500
    internal_error, counted and alerted as a bug, logged `OSError` and a place) (helper `disk`, 2026-12-06)."""
    body = orjson.dumps([canonical_dossier(f"big-{i}") for i in range(3000)])  # ~1.5 MB
    chunks = len(body) // (64 * 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with capture_logs() as logs:
            answer = await call(app(Recording()), KEY, Body(size=64 * 1024, chunks=chunks,
                                                             data=body[:64 * 1024 * chunks]))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (answer.status, answer.json()["error"]) == (503, "busy") and "retry-after" in answer.headers
    (line,) = [e for e in logs if e["event"] == "gateway.body_spool_failed"]
    assert (line["folder"], line["reason"]) == (tempfile.gettempdir(), "File too large")


@pytest.mark.parametrize("last", [[], [b"z" * 65536]], ids=["read", "a later chunk"])
def test_a_body_whose_last_bytes_the_full_disk_refuses_is_unadmitted_not_an_error(last: list[bytes]) -> None:
    """The spool's file is buffered: with room for exactly 1 MiB, a body of 1 MiB and 100 bytes had its last 100 bytes
    refused only when the file was read (its buffer flushed) or closed, an `OSError` out of both, answered 500
    internal_error; or, refused at a later chunk (503 said), the close raised again over it (review of 2026-12-06)."""
    from services.gateway.bodies import Spool, Unadmitted
    from services.gateway.ratelimit import Budget

    mib = 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (mib, hard))
    try:
        with pytest.raises(Unadmitted) as refused, Spool(Budget(8 * mib)) as spool:
            for chunk in [b"x" * mib, b"y" * 100, *last]:
                spool.write(chunk)
            spool.read()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert refused.value.budget == "disk"
