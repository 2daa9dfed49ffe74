"""`python -m schemas.asyncapi [--check]`: the AsyncAPI 3.0 document, generated from the topic registry and models.

Every topic of `schemas.topics.TOPICS` (plus the replay log) is a channel with
its Kafka binding (partitions, config) and key; every canonical event type is a
message in CloudEvents binary mode (`ce_*` headers, JSON `data` payload). Raw
channels also list the structured-JSON and portal shapes integrators may send.
The committed `schemas/asyncapi.yaml` must equal this output (a test checks it).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas import notify_deadletter, portal, yaml12
from schemas.deadletter import HEADER_NOTES, Header, Reason
from schemas.events import EVENTS_BY_FAMILY, Family, data_model, type_name
from schemas.notification import NotificationRequest, NotificationStatus
from schemas.personal import SEALED_HEADERS, ErasureNotice
from schemas.snapshot import COMMUNE_SNAPSHOT, CommuneIndicators
from schemas.topics import COMMUNE_KEY, DLQ_NOTIFY, TOPICS, Kind, TopicSpec
from schemas.trace import PATTERN as TRACEPARENT

COMMITTED = Path(__file__).with_name("asyncapi.yaml")
VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
COMMUNE = {"type": "string", "pattern": r"^\d{5}$", "description": COMMUNE_KEY, "examples": ["02269"]}


def _camel(text: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", text)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


Refs = dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]
"""(model, mode) -> the `$ref` of its component schema."""


def _schemas() -> tuple[Refs, dict[str, Any]]:
    """Component schemas of every event (input shape) and its data (output shape)."""
    events = [m for ms in EVENTS_BY_FAMILY.values() for m in ms]
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in events]
    keys += [(data_model(m), "serialization") for m in events]
    keys += [(NotificationStatus, "serialization"), (CommuneIndicators, "serialization"),
             (ErasureNotice, "serialization"), (NotificationRequest, "serialization")]
    refs, defs = models_json_schema(keys, ref_template=REF)
    components: dict[str, Any] = defs.get("$defs", {})
    by_model: Refs = {}
    for (model, mode), ref in refs.items():
        if issubclass(model, BaseModel):  # always: the keys are the models passed in
            by_model[model, mode] = ref
    return by_model, components


def _ce_headers(event_type: str) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_commune",
                     "ce_province", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {**text, "description": "Event id, unique per source"},
            "ce_source": {**text, "format": "uri-reference",
                          "description": "URI-reference (RFC 3986) of the sending system (source registry identity)"},
            "ce_type": {"type": "string", "const": event_type},
            "ce_time": {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"},
            "ce_subject": {**text, "description": "Dossier code, visit id, announcement id, ..."},
            "ce_commune": COMMUNE,
            "ce_province": {"type": "string", "pattern": r"^\d{2}$"},
            "content-type": {"type": "string", "const": "application/json"},
            "ce_traceparent": {"type": "string", "pattern": TRACEPARENT,
                               "description": "W3C trace context (CloudEvents distributed-tracing extension): on every "
                               "canonical record; optional on a raw one, derived from source and id when absent"},
        },
    }


def _messages(refs: Refs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for family, models in EVENTS_BY_FAMILY.items():
        for m in models:
            t = type_name(m)
            data = data_model(m)
            name = _camel(t.removeprefix("vn.communebus."))
            common = {"title": t, "summary": (m.__doc__ or data.__doc__ or t).strip().splitlines()[0],
                      "contentType": "application/json",
                      "bindings": {"kafka": {"key": COMMUNE, "bindingVersion": "0.5.0"}}}
            out[name] = {**common, "name": name, "headers": _ce_headers(t),
                         "payload": refs[(data, "serialization")],
                         "description": "CloudEvents binary mode: attributes in ce_* headers, `data` as the value "
                         f"({family.value})"}
            out[name + "Structured"] = {**common, "name": name + "Structured", "payload": refs[(m, "validation")],
                                        "description": "CloudEvents structured JSON (the whole event as the value); "
                                        "raw topics only"}
    out["portalDossier"] = {
        "name": "portalDossier", "title": "National portal dossier sync payload", "contentType": "application/json",
        "headers": {"type": "object", "required": [portal.COMMUNE_HEADER], "properties": {
            portal.COMMUNE_HEADER: {**COMMUNE, "description": "The commune (the payload does not carry it), a code of "
                                    "the official list"},
            portal.SOURCE_HEADER: portal.source_header()}},
        "payload": portal.payload_schema(), "bindings": {"kafka": {"key": COMMUNE, "bindingVersion": "0.5.0"}},
    }
    out["deadLetter"] = {
        "name": "deadLetter", "title": "Record intake rejected", "contentType": "application/octet-stream",
        "description": "commune.dlq.intake: the original record sealed whole (key, headers, value; ADR 0015, 0026), "
                       "dlq.* headers in clear (dlq.lookup.*: names trace finds it by, ADR 0038), a copy of the "
                       "original headers that identify nobody",
        "headers": {"type": "object", "required": [Header.REASON.value, Header.SOURCE_TOPIC.value], "properties": {
            Header.REASON.value: {"type": "string", "enum": [r.value for r in Reason]},
            **{h.value: {"type": "string", **({"description": HEADER_NOTES[h]} if h in HEADER_NOTES else {})}
               for h in Header if h is not Header.REASON},
            **SEALED_HEADERS}},
        "payload": {"description": "Nonce and AES-256-GCM ciphertext of the original record (layout in "
                                   "dlq.sealed.layout)"},
    }
    out["notifyDeadLetter"] = {
        "name": "notifyDeadLetter", "title": "Notification given up", "contentType": "application/json",
        "summary": "A notification notify gave up, as its request (redacted), to be listed and sent again",
        "description": "commune.dlq.notify: the request without clear contacts (an applicant's stay sealed), keyed by "
                       "commune; its webhook body, then its parameters, left out when the letter would be too large "
                       "(dlq.omitted). `commune-bus notify-dlq list|replay` reads them (ADR 0033)",
        "headers": notify_deadletter.header_schema(), "payload": refs[(NotificationRequest, "serialization")],
        "bindings": {"kafka": {"key": COMMUNE, "bindingVersion": "0.5.0"}}}
    keyed = {"bindings": {"kafka": {"key": COMMUNE, "bindingVersion": "0.5.0"}}, "contentType": "application/json"}
    out["notificationStatus"] = {
        "name": "notificationStatus", "title": "Notification attempt outcome", **keyed,
        "summary": (NotificationStatus.__doc__ or "").strip().splitlines()[0],
        "description": "commune.notify.status: one JSON record per attempt (sent, delivered, failed, deferred, "
                       "expired, erased, dead-lettered) to deliver a notification about a canonical event or a "
                       "deadline alert, keyed by that event's 5-digit commune code, which the value's `commune` "
                       "repeats; no personal data. Erasure notices to webhook subscribers (ADR 0035) have no status "
                       "record",
        "payload": refs[(NotificationStatus, "serialization")]}
    out["communeSnapshot"] = {
        "name": "communeSnapshot", "title": COMMUNE_SNAPSHOT, **keyed, "headers": _ce_headers(COMMUNE_SNAPSHOT),
        "summary": "A commune's complete current figures (not a delta): the newest per commune is all one needs",
        "description": "commune.metrics.snapshots: CloudEvents binary mode, `data` as the value "
                       "(schemas.snapshot.decode_snapshot)",
        "payload": refs[(CommuneIndicators, "serialization")]}
    out["erasureNotice"] = {
        "name": "erasureNotice", "title": "An applicant erased", "contentType": "application/json",
        "summary": (ErasureNotice.__doc__ or "").strip().splitlines()[0],
        "description": "commune.privacy.erasures: one JSON record per erasure, keyed by the subject: delete what you "
                       "keep of that subject (ADR 0035)",
        "bindings": {"kafka": {"key": {"type": "string", "description": "subject id"}, "bindingVersion": "0.5.0"}},
        "payload": refs[(ErasureNotice, "serialization")]}
    out["internalRecord"] = {"name": "internalRecord", "title": "Internal or not-yet-specified record",
                             "payload": {"type": "object"}}
    return out


def _channel_messages(topic: TopicSpec, messages: dict[str, Any]) -> list[str]:
    if topic.family is not None and topic.kind in (Kind.RAW, Kind.CANONICAL):
        names = [_camel(type_name(m).removeprefix("vn.communebus.")) for m in EVENTS_BY_FAMILY[topic.family]]
        if topic.kind is Kind.RAW:
            names += [n + "Structured" for n in names] + (["portalDossier"] if topic.family is Family.DOSSIER else [])
        return names
    if topic.name == DLQ_NOTIFY.name:
        return ["notifyDeadLetter"]
    return [{Kind.DEAD_LETTER: "deadLetter", Kind.STATUS: "notificationStatus",
             Kind.SNAPSHOT: "communeSnapshot", Kind.ERASURE: "erasureNotice"}.get(topic.kind, "internalRecord")]


def document() -> dict[str, Any]:
    refs, defs = _schemas()
    messages = _messages(refs)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        cid = _camel(topic.name.removeprefix("commune."))
        names = _channel_messages(topic, messages)
        internal = ("" if topic.kind in (Kind.RAW, *PUBLISHED_KINDS)
                    else "Not for subscribers: the services' and operators'. ")
        channels[cid] = {
            "address": topic.name, "title": topic.name,
            "description": f"{internal}{topic.description}. Key: {topic.key}.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions, "bindingVersion": "0.5.0",
                                   **({"topicConfiguration": _topic_config(topic)} if topic.config else {})}},
        }
        if internal:  # documented as a channel; no operation invites anyone onto it
            continue
        action = "send" if topic.kind is Kind.RAW else "receive"
        verb = "publishTo" if action == "send" else "consume"
        operations[verb + cid[:1].upper() + cid[1:]] = {
            "action": action, "channel": {"$ref": f"#/channels/{cid}"},
            "summary": ("The gateway, the operator's dead-letter replays and the simulator publish here; a source's "
                        "own principal may not (it writes its bound topic, the channel below)"
                        if action == "send" else
                        "Subscribers read here (read_committed), as subscriber-<id> in groups "
                        "commune-bus.subscriber.<id>.*"),
            "messages": [{"$ref": f"#/channels/{cid}/messages/{n}"} for n in names],
        }
        if topic.kind is Kind.RAW:
            _bound_channel(topic, cid, names, channels, operations)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "commune-bus", "version": VERSION,
                 "description": "Kafka event backbone for Vietnam's communes: raw inbound topics, validated canonical "
                 "CloudEvents topics (key = commune code), dead letters. "
                 "Generated by `python -m schemas.asyncapi`."},
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:9392", "protocol": "kafka-secure",
                      "description": "The local secure broker (infra/kafka/kafka.sh, make up): SASL_SSL with "
                      "SCRAM-SHA-512 over TLS 1.3; the CA is infra/kafka/secrets/ca.crt. A production cluster is the "
                      "same, at its own address (ADR 0014)",
                      "security": [{"$ref": "#/components/securitySchemes/scram"}]},
            "localPlaintext": {"host": "127.0.0.1:9092", "protocol": "kafka",
                               "description": "Development only: `make up SECURE=0`, no authentication"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": defs, "securitySchemes": {"scram": {
            "type": "scramSha512", "description": "Each client has its own principal: `source-<id>` writes its bound "
            "raw topics, `subscriber-<id>` reads the canonical, status and snapshot topics (infra/sources.yaml)"}}},
    }


BOUND = ".src."
"""`services.sources.topics.BOUND`: a source's own raw topic is `<raw topic>.src.<registry id>` (ADR 0018)."""


def _bound_channel(topic: TopicSpec, cid: str, names: list[str], channels: dict[str, Any],
                   operations: dict[str, Any]) -> None:
    """The raw topics bound to each registered source (one per family it may publish), as one channel with the
    source's registry id as parameter, and the operation a source's principal publishes with."""
    bound = cid + "Source"
    channels[bound] = {
        "address": f"{topic.name}{BOUND}{{sourceId}}", "title": f"{topic.name}{BOUND}<source id>",
        "description": f"A registered source's own raw topic (only its principal `source-<id>` writes it, ADR 0018), "
                       f"partitions and config of {topic.name}. Key: {topic.key}.",
        "parameters": {"sourceId": {"description": "The source's id in infra/sources.yaml"}},
        "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        "bindings": {"kafka": {"partitions": topic.partitions, "bindingVersion": "0.5.0",
                               **({"topicConfiguration": _topic_config(topic)} if topic.config else {})}},
    }
    operations["publishTo" + bound[:1].upper() + bound[1:]] = {
        "action": "send", "channel": {"$ref": f"#/channels/{bound}"},
        "summary": "A registered source publishes here, as source-<id>",
        "messages": [{"$ref": f"#/channels/{bound}/messages/{n}"} for n in names],
    }


PUBLISHED_KINDS = (Kind.CANONICAL, Kind.STATUS, Kind.SNAPSHOT, Kind.ERASURE)
"""The topics subscribers read (`services.common.acls.PUBLISHED`); every other non-raw topic is internal."""


def _topic_config(topic: TopicSpec) -> dict[str, Any]:
    allowed: dict[str, Callable[[str], object]] = {
        "cleanup.policy": lambda v: v.split(","), "retention.ms": int, "max.message.bytes": int,
    }
    return {k: allowed[k](v) for k, v in topic.config.items() if k in allowed}


def render() -> str:
    return yaml12.dump(document())


def main(argv: list[str]) -> int:
    """`python -m schemas.asyncapi [--check]`: write schemas/asyncapi.yaml, or check it is up to date (exit 1 if
    not). Anything else is a usage error: it writes nothing (`--help` rewrote the file)."""
    if any(arg != "--check" for arg in argv):
        print("usage: python -m schemas.asyncapi [--check]  (write schemas/asyncapi.yaml, or check it)")
        return 0 if argv in (["--help"], ["-h"]) else 2
    text = render()
    if "--check" in argv:
        same = COMMITTED.exists() and COMMITTED.read_text(encoding="utf-8") == text
        print(f"{COMMITTED.name} is " + ("up to date" if same else "STALE: run python -m schemas.asyncapi"))
        return 0 if same else 1
    COMMITTED.write_text(text, encoding="utf-8")
    print(f"wrote {COMMITTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
