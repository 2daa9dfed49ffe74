"""`commune-bus dlq list|replay` on the real broker: fixed dead letters come out canonical, and only once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from schemas import wire
from tests.integrator.conftest import Stack
from tests.integrator.kafka_read import read, wait_for
from tests.kafkatools import produce
from tests.samples import canonical_dossier, portal_dossier

pytestmark = pytest.mark.kafka


def listed(stack: Stack, *filters: str) -> list[dict]:
    out = stack.cli("dlq", "list", "--json", *filters).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_replay_redrives_fixed_records_once_and_they_come_out_canonical(stack: Stack) -> None:
    """Dossiers dead-lettered for a missing commune header are replayed with the header set: canonical, once."""
    since = datetime.now(UTC).isoformat()
    codes = [f"DLQ-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    stranger = {**canonical_dossier("stranger-" + uuid.uuid4().hex[:6]), "source": "/unregistered/app"}
    asyncio.run(produce(stack.bootstrap, stack.topic("commune.raw.dossier"),
                        [(b"02269", orjson.dumps(portal_dossier(c)), []) for c in codes]
                        + [(b"02269", orjson.dumps(stranger), [])]))
    dlq = stack.topic("commune.dlq.intake")
    wait_for(stack.bootstrap, dlq,
             lambda rs: sum(dict(r.headers)["dlq.rejected.at"].decode() >= since for r in rs) >= 3)

    missing = listed(stack, "--reason", "missing_commune_header", "--since", since)
    assert len(missing) == 2 and not any(m["replayed"] for m in missing)
    unauthorised = listed(stack, "--source", "/unregistered/*", "--since", since)
    assert [m["reason"] for m in unauthorised] == ["unauthorised_source"]

    first = stack.cli("dlq", "replay", "--reason", "missing_commune_header", "--since", since,
                      "--set-header", "commune-code=02269")
    assert "replayed 2 dead letters" in first.stderr
    canonical = wait_for(stack.bootstrap, stack.topic("commune.events.dossier"),
                         lambda rs: set(codes) <= {wire.decode(r.headers, r.value).subject for r in rs})
    assert sorted(s for r in canonical if (s := wire.decode(r.headers, r.value).subject) in codes) == sorted(codes)

    second = stack.cli("dlq", "replay", "--reason", "missing_commune_header", "--since", since,
                       "--set-header", "commune-code=02269")
    assert "replayed 0 dead letters" in second.stderr
    raw = read(stack.bootstrap, stack.topic("commune.raw.dossier"))  # both replays have ended: all is there
    redriven = [dict(r.headers) for r in raw if "dlq.replayed" in dict(r.headers)
                and orjson.loads(r.value).get("MaHoSo") in codes]
    assert len(redriven) == 2, "each dead letter re-driven exactly once"
    assert {h["dlq.replayed"].decode() for h in redriven} == {m["dlq"] for m in missing}
    assert all(h["commune-code"] == b"02269" and not any(k.startswith("dlq.") and k != "dlq.replayed" for k in h)
               for h in redriven)
    assert [m["replayed"] for m in listed(stack, "--reason", "missing_commune_header", "--since", since)] == [True] * 2
    assert [m["replayed"] for m in listed(stack, "--source", "/unregistered/*", "--since", since)] == [False]


def test_unauthorised_records_replayed_after_the_registry_is_fixed_come_out_canonical(
        kafka_bootstrap: str, unique: str, tmp_path) -> None:
    """A source missing from the registry is dead-lettered; once added (intake restarted), replay makes it canonical."""
    from schemas.topics import TOPICS, scoped
    from services.common.admin import ensure_topics
    from services.common.settings import KafkaConnection
    from tests.integrator.conftest import REGISTRY, Stack
    from tests.kafkatools import free_port, start_service, stop_service

    ns = f"reg{unique}"
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(t, ns) for t in TOPICS]))
    registry = tmp_path / "sources.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "INTAKE_NAMESPACE": ns, "INTAKE_SOURCES_FILE": str(registry)}
    stack = Stack(kafka_bootstrap, ns, "", tmp_path, "")  # no gateway: no API, no /metrics
    event = {**canonical_dossier("newapp-" + unique), "source": "/agencies/new-app"}

    intake = start_service("services.intake", {**env, "INTAKE_HTTP_PORT": str(free_port())}, tmp_path / "i1.log")
    try:
        asyncio.run(produce(kafka_bootstrap, stack.topic("commune.raw.dossier"), [(b"02269", orjson.dumps(event), [])]))
        wait_for(kafka_bootstrap, stack.topic("commune.dlq.intake"), lambda rs: len(rs) >= 1)
    finally:
        stop_service(intake)
    assert [m["reason"] for m in listed(stack, "--source", "/agencies/new-app")] == ["unauthorised_source"]

    registry.write_text(REGISTRY + '  - id: new-app\n    sources: ["/agencies/new-app"]\n'
                        '    families: [dossier]\n    communes: ["02269"]\n', encoding="utf-8")
    intake = start_service("services.intake", {**env, "INTAKE_HTTP_PORT": str(free_port())}, tmp_path / "i2.log")
    try:
        assert "replayed 1 dead letter" in stack.cli("dlq", "replay", "--reason", "unauthorised_source").stderr
        canonical = wait_for(kafka_bootstrap, stack.topic("commune.events.dossier"), lambda rs: len(rs) >= 1)
        assert [wire.decode(r.headers, r.value).id for r in canonical] == [event["id"]]
        assert "replayed 0 dead letters" in stack.cli("dlq", "replay", "--reason", "unauthorised_source").stderr
    finally:
        stop_service(intake)
