"""Gateway settings: environment variables with the `GATEWAY_` prefix, Kafka from the shared `KAFKA_*`.

The gateway has one HTTP server, `GATEWAY_HOST:GATEWAY_PORT` (HTTPS when `GATEWAY_TLS_CERTFILE` and
`GATEWAY_TLS_KEYFILE` are set): the API and its `/metrics`, `/healthz`, `/readyz`. Credentials come from a
secrets file (`GATEWAY_SECRETS_FILE`, YAML, kept out of git) mapping each source id of the registry to its
API key and/or HMAC key, read by `services.gateway.keys`.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from schemas.topics import CANONICAL_RECORD_BYTES, MAX_RECORD_BYTES
from services.common.settings import MAX_TRANSACTION_TIMEOUT_MS, CertificateRole, ServiceSettings
from services.gateway.claims import DEFAULT_ANSWER_BYTES
from services.gateway.publisher import STOP_TIMEOUT_S
from services.intake.normalise import DEFAULT_MAX_RECORD_BYTES

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STOP_DELAY_S = 2.0
"""`GATEWAY_STOP_DELAY_S` when unset: enough for a load balancer probing every second, small enough for compose."""


def _networks(value: str) -> str:
    """Comma-separated IP addresses or networks, each as `ipaddress` reads it, joined without spaces. Refused: what
    uvicorn would take for a literal that never matches (a host name, a network with host bits set), and every
    address at once (`*`, `0.0.0.0/0`, `::/0`: any peer could name any address)."""
    items = [part.strip() for part in value.split(",") if part.strip()]
    for item in items:
        if ipaddress.ip_network(item).prefixlen == 0:  # ValueError for a non-address, or host bits set
            raise ValueError(f"{item} is every address: name the proxies' own addresses or networks")
    return ",".join(items)


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, populate_by_name=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address of the API and its /healthz, /readyz "
                      "(0.0.0.0 in a container)")
    port: int = Field(default=8080, ge=1, le=65535, description="Port of the API and its /healthz, /readyz")
    http_port: int = Field(
        default=9104, ge=0, le=65535, description="Port of /metrics (and /healthz, /readyz again) on "
        "GATEWAY_HTTP_HOST, as every service has: kept off the API port, which integrators reach, so the gateway's "
        "counts of refusals, failed signatures and connections are seen by Prometheus only; 0 = no such server")
    tls_certfile: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS instead of HTTP")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of the certificate")
    sources_file: Path = ROOT / "infra/sources.yaml"
    secrets_file: Path | None = None
    operators_file: Path | None = Field(
        default=None, description="Operators' keys (YAML: operator id -> key) for GET /v1/trace/{query} and POST "
        "/v1/erasures; unset: both answer 401. Keys of at least 16 characters, ids of at most 64 without spaces")
    instance_id: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
        description="Names this instance's transactional id: a restarted instance with the same id fences its "
        "predecessor's open transaction. Stable per instance (default: the host name), unique among instances",
    )
    max_body_bytes: int = Field(default=MAX_RECORD_BYTES, ge=1024, le=256 * 1024 * 1024,
                                description="A request body past this many bytes is refused (413) while it streams "
                                "(at most 256 MiB: a body is held whole while it is parsed)")
    max_record_bytes: int = Field(
        default=DEFAULT_MAX_RECORD_BYTES, ge=1024, le=MAX_RECORD_BYTES,
        validation_alias=AliasChoices("GATEWAY_MAX_RECORD_BYTES", "INTAKE_MAX_RECORD_BYTES", "max_record_bytes"),
        description="One record's limit as sent and as published: intake's own (`INTAKE_MAX_RECORD_BYTES`)",
    )
    max_canonical_bytes: int = Field(
        default=CANONICAL_RECORD_BYTES, ge=1024, le=MAX_RECORD_BYTES,
        validation_alias=AliasChoices("GATEWAY_MAX_CANONICAL_BYTES", "INTAKE_MAX_CANONICAL_BYTES",
                                      "max_canonical_bytes"),
        description="One event's limit as intake will publish it, canonical and sealed: intake's own "
        "(`INTAKE_MAX_CANONICAL_BYTES`), so that nothing accepted here is dead-lettered by intake for its size",
    )
    intake_seals: bool = Field(
        default=True, validation_alias=AliasChoices("INTAKE_SEAL_PERSONAL_DATA", "intake_seals"),
        description="Whether intake seals applicants (`INTAKE_SEAL_PERSONAL_DATA`): the canonical event is then "
        "measured sealed, as intake will publish it",
    )
    max_records: int = Field(default=1000, ge=1, le=100_000, description="Records in one request at most")
    kafka_timeout_s: float = Field(default=10.0, gt=0, le=600, description="Each wait for the broker at most")
    transaction_timeout_ms: int = Field(default=20_000, ge=1000, le=MAX_TRANSACTION_TIMEOUT_MS,
                                        description="A transaction left open by a dead gateway is aborted after this")
    retry_after_s: int = Field(default=5, ge=1, le=3600, description="Retry-After of a 503 or 429: try again later")
    stop_delay_s: float | None = Field(
        default=None, ge=0, le=600,
        description="On SIGTERM, how long the gateway keeps serving with /readyz answering 503 before it stops taking "
        "requests: the time a load balancer or Kubernetes needs to see it and send requests elsewhere (its probe "
        "period times its failure threshold; behind Kubernetes about 5-10 s, docs/runbooks.md). Counted in the stop: "
        "this, GATEWAY_STOP_REQUESTS_S and the producer's stop end within GATEWAY_STOP_DEADLINE_S. Unset: 2 s, or "
        "what GATEWAY_STOP_REQUESTS_S leaves of the deadline if less (a deployment that set it to 20 s, the default "
        "before this setting, still starts)")
    stop_requests_s: int = Field(
        default=18, ge=1, le=3_600,
        description="On SIGTERM, after GATEWAY_STOP_DELAY_S, how long requests under way may take to finish (each of "
        "their Kafka waits is bounded by kafka_timeout_s); then they are cancelled and answered 500 by the server: a "
        "cancelled request's transaction is aborted unless its commit was already sent, so its client sends it "
        "again, safely with its Idempotency-Key. Bounds the gateway's stop (infra/compose.yaml's grace period)")
    signature_tolerance_s: int = Field(default=300, ge=1, le=3600,
                                       description="A signature's timestamp may be this far from the gateway's clock; "
                                       "its nonce is remembered as long")
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, le=36 * 3600,
                                   description="How long an Idempotency-Key's answer is kept (the claims topic "
                                   "keeps records 48 h)")
    idempotency_answer_bytes: int = Field(
        default=DEFAULT_ANSWER_BYTES, ge=0, le=4 * 1024**3,
        description="Whole answer bodies each instance keeps for Idempotency-Key replays, oldest dropped first: a "
        "key past it keeps its status, digest and counts (a replay rebuilds the body from the retried request)")
    idempotency_keys_per_source: int = Field(
        default=100_000, ge=1, le=10_000_000,
        description="Idempotency-Keys one source may hold at once (answered within the TTL, or in progress): each "
        "costs every instance ~1 KB for the TTL, so past it a request with a new key is refused (429 "
        "`idempotency_keys_exhausted`) while retries of held keys and requests without a key go on")
    claim_lease_s: float = Field(default=90.0, ge=5.0, le=1800.0,
                                 description="A request holds its Idempotency-Key this long at most; a gateway that "
                                 "died with it leaves the key free again after this (below the claims topic's "
                                 "compaction lag, ADR 0013); above what the request may wait on Kafka meanwhile "
                                 "(`key_held_s`: 65 s with the default GATEWAY_KAFKA_TIMEOUT_S), refused otherwise")
    rate_per_s: float = Field(default=50.0, gt=0, le=1e6,
                              description="Requests per second each source may make (sustained)")
    rate_burst: int = Field(default=100, ge=1, le=1_000_000,
                            description="Requests a source may make at once after a quiet spell")
    failed_signatures_burst: int = Field(
        default=10, ge=1, le=1_000_000,
        description="Failed signatures a peer address may send before its signed requests are "
        "refused (429) unread; behind a proxy, the peer is the client only if GATEWAY_TRUSTED_PROXIES names the proxy")
    failed_signatures_per_s: float = Field(default=0.1, gt=0, le=1e6,
                                           description="How fast a peer's allowance of failed signatures comes back")
    unverified_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, le=4 * 1024**3,
        description="Bytes of signed bodies being read before their signature is checked (their HMAC covers the "
        "body), from all addresses together: anyone who knows a signing source's id can send one. Past it a signed "
        "body is refused 503 `busy` (Retry-After: 1) and its connection closed. At least GATEWAY_MAX_BODY_BYTES. "
        "Each address has its own allowance too (GATEWAY_FAILED_SIGNATURES_BURST bodies at the limit)")
    held_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, le=4 * 1024**3,
        description="Bytes of request bodies the gateway holds at once, from all sources, from before a body is "
        "read (an API key's; a signed one's once verified) until it is answered: bodies are loaded whole and checked "
        "one at a time, so past this a request is refused 503 `busy` (Retry-After), its body unread. At least "
        "GATEWAY_HELD_BODY_BYTES_PER_SOURCE")
    held_body_bytes_per_source: int = Field(
        default=16 * 1024 * 1024, ge=1024, le=4 * 1024**3,
        description="The same, for one source: past it that source's request is refused 429 `rate_limited` "
        "(Retry-After), its body unread, and the others go on. At least GATEWAY_MAX_BODY_BYTES")
    trusted_proxies: Annotated[str, AfterValidator(_networks)] = Field(
        default="", description="Reverse proxies (comma-separated addresses or networks; every proxy of a chain) "
        "whose X-Forwarded-For and X-Forwarded-Proto name the client and its scheme. Empty (the default): none, the "
        "TCP peer is the client. Name a proxy only if clients reach the gateway through it alone and it appends the "
        "peer it received to X-Forwarded-For (nginx: $proxy_add_x_forwarded_for): a peer listed can name any address")
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="A connection's request line and headers must have arrived within "
        "this of its opening, or of the previous response on a kept-alive connection; else it is closed. Headers "
        "are at most 16 KiB: 10 s is ample on a slow link and frees a silent or byte-a-second client's slot. Over "
        "TLS the handshake must also be done within this of the TCP connection's opening, then the headers have theirs")
    body_timeout_s: float = Field(
        default=20.0, gt=0, le=600, description="Once the headers are in, a body may take this long plus one second "
        "per GATEWAY_BODY_MIN_BYTES_PER_S bytes received so far, and its bytes may pause this long at most (time the "
        "gateway itself is not reading is not counted); past either the connection is closed. A client sending at "
        "least that rate, never silent this long, is never cut")
    body_min_bytes_per_s: int = Field(
        default=4096, ge=1, le=1024**3,
        description="The slowest a body may arrive on average past GATEWAY_BODY_TIMEOUT_S: "
        "4 KiB/s (32 kbit/s) is far below any working link, and a client must spend that much to hold a slot")
    send_timeout_s: float = Field(
        default=20.0, gt=0, le=600, description="A client that keeps the gateway's writes held back this long (it "
        "reads too little of an answer, or none: it pipelines requests, or asks for a large answer, and does not "
        "read), or leaves a closing connection's last bytes unread this long, has its connection cut")
    keepalive_timeout_s: int = Field(
        default=5, ge=1, le=300, description="A kept-alive connection idle this long after a response is closed "
        "(uvicorn's timeout_keep_alive); at most GATEWAY_HEADER_TIMEOUT_S, which also runs from that response. "
        "Behind a proxy that reuses connections, set both above the proxy's own idle timeout")
    max_connections: int = Field(
        default=512, ge=1, le=1_000_000, description="Open connections at most (probes and TLS handshakes under way "
        "included); one more takes the place of the connection that has waited longest for a request's headers or "
        "for the end of its TLS handshake (closed, `evicted`), or, when "
        "every one is busy with a request, is answered 503 with Retry-After and closed at once (over HTTPS closed "
        "unanswered: nothing can be written before a handshake). Keep twice it (a connection may hold a body's "
        "temporary file too) below the process's open-file limit "
        "(`ulimit -n`) less about 100 for the Kafka clients and files; the gateway warns at start when it is not")
    trace_concurrency: int = Field(
        default=2, ge=1, le=32, description="GET /v1/trace/{query} calls running at once (each reads whole topics "
        "in a thread of its own); one more is answered 503 busy with Retry-After at once")
    trace_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="A trace not done within this is stopped and answered 504 "
        "(nothing listed): below the usual 60 s of proxies and clients; `commune-bus trace` has no such limit")

    def certificate_files(self) -> dict[CertificateRole, Path]:
        """Kafka's, and the certificate (chain) the API serves HTTPS with."""
        files = super().certificate_files()
        if self.tls_certfile is not None:
            files["gateway"] = self.tls_certfile
        return files

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both GATEWAY_TLS_CERTFILE and GATEWAY_TLS_KEYFILE, or neither")
        if self.keepalive_timeout_s > self.header_timeout_s:
            raise ValueError("GATEWAY_KEEPALIVE_TIMEOUT_S is above GATEWAY_HEADER_TIMEOUT_S, which runs from the same "
                             "response and would close an idle connection first: raise both together")
        return self

    @model_validator(mode="after")
    def _budgets_hold_a_body(self) -> Self:
        """A budget below the body limit would refuse every body at the limit, whatever else is being read."""
        for name, budget, least, of in (
                ("UNVERIFIED_BODY_BYTES", self.unverified_body_bytes, self.max_body_bytes, "MAX_BODY_BYTES"),
                ("HELD_BODY_BYTES_PER_SOURCE", self.held_body_bytes_per_source, self.max_body_bytes, "MAX_BODY_BYTES"),
                ("HELD_BODY_BYTES", self.held_body_bytes, self.held_body_bytes_per_source,
                 "HELD_BODY_BYTES_PER_SOURCE")):
            if budget < least:
                raise ValueError(f"GATEWAY_{name} ({budget}) is below GATEWAY_{of} ({least}): a body at the limit "
                                 "could never be read; raise the first or lower the second")
        return self

    @model_validator(mode="after")
    def _two_servers_two_addresses(self) -> Self:
        """The API and /metrics are two servers: on one address the second could not bind, the process ended, and
        its restart met the same (a crash loop)."""
        wildcard = {"", "0.0.0.0", "::"}
        if self.http_port == self.port and (self.host == self.http_host or {self.host, self.http_host} & wildcard):
            raise ValueError(f"GATEWAY_PORT and GATEWAY_HTTP_PORT are both {self.port} on GATEWAY_HOST and "
                             "GATEWAY_HTTP_HOST: the API and /metrics are two servers, give them two ports")
        return self

    def stop_delay(self) -> float:
        """`stop_delay_s`, or when unset `DEFAULT_STOP_DELAY_S` at most, what the deadline leaves after the requests
        under way and the producer's stop."""
        if self.stop_delay_s is not None:
            return self.stop_delay_s
        return max(0.0, min(DEFAULT_STOP_DELAY_S, self.stop_deadline_s - self.stop_requests_s - STOP_TIMEOUT_S))

    @model_validator(mode="after")
    def _requests_end_before_the_deadline(self) -> Self:
        """Requests keep coming for `stop_delay_s`, those under way are cancelled `stop_requests_s` later, then the
        publisher's producer aborts their transactions (`publisher.STOP_TIMEOUT_S`); the stop deadline ends the
        process, as if killed. At or past the deadline, the requests never got their 500 (their clients saw a reset
        connection) and the aborts were left to the transaction timeout."""
        if self.stop_delay() + self.stop_requests_s + STOP_TIMEOUT_S > self.stop_deadline_s:
            raise ValueError(f"GATEWAY_STOP_DELAY_S ({self.stop_delay():g} s), GATEWAY_STOP_REQUESTS_S "
                             f"({self.stop_requests_s} s) and the producer's stop ({STOP_TIMEOUT_S:g} s) must end "
                             f"within GATEWAY_STOP_DEADLINE_S ({self.stop_deadline_s:g} s): lower the first two or "
                             "raise the last")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_the_waits(self) -> Self:
        """A lease ending while its request still waits on Kafka let a retry (on another instance) win the key and
        publish the request again, both transactions committing: two 202s, the events twice."""
        if self.claim_lease_s <= self.key_held_s():
            raise ValueError(f"GATEWAY_CLAIM_LEASE_S ({self.claim_lease_s:g} s) must be above what a request holding "
                             f"its Idempotency-Key may wait on Kafka, six GATEWAY_KAFKA_TIMEOUT_S and a producer's "
                             f"stop ({self.key_held_s():g} s): raise it, or lower GATEWAY_KAFKA_TIMEOUT_S")
        return self

    def key_held_s(self) -> float:
        """The longest a request holds its Idempotency-Key before its transaction commits, in waits on Kafka, each
        within `kafka_timeout_s`: three in its claim, once the lease is stamped (the claims' restore, the claim's write,
        the claims reader reaching it: `claimlog.ClaimLog.claim`); ahead of it in the publisher's lock, a reconnection
        of the broker watch and another group's transaction, whose failure drops the producer
        (`publisher.STOP_TIMEOUT_S`); its own transaction. Counting the claim as one wait (45 s by default), the default
        lease of 60 s was accepted and could end first."""
        return 6 * self.kafka_timeout_s + STOP_TIMEOUT_S
