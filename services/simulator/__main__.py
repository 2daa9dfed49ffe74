"""`python -m services.simulator`: realistic raw traffic for the real communes of one province.

    python -m services.simulator --province 20 --rate 50 --duration 60 --invalid-share 0.05 --namespace NS --seed 1
"""

from __future__ import annotations

import argparse

from schemas.admin import province_names
from schemas.events import Family
from services.common import runtime
from services.simulator.producer import run
from services.simulator.settings import SimulatorSettings


def parse(argv: list[str] | None = None) -> SimulatorSettings:
    p = argparse.ArgumentParser(prog="python -m services.simulator", description=__doc__.splitlines()[0])
    p.add_argument("--province", help="official 2-digit province code (default 20, Lạng Sơn)")
    p.add_argument("--rate", type=float, help="records per second (default 50)")
    p.add_argument("--duration", type=float, help="seconds to run, 0 = until Ctrl-C (default 0)")
    p.add_argument("--invalid-share", type=float, help="fraction of deliberately bad records (default 0.05)")
    p.add_argument("--namespace", help="topic prefix, as schemas.topics.scoped (default none)")
    p.add_argument("--seed", type=int, help="random seed (default: random)")
    p.add_argument("--bootstrap", help="Kafka bootstrap (default env KAFKA_BOOTSTRAP or 127.0.0.1:9092; "
                   "TLS/SASL from KAFKA_*)")
    p.add_argument("--day-seconds", type=float, help="real seconds per simulated day (default 10)")
    p.add_argument("--backfill-days", type=float, help="how far back event times reach (default 14)")
    p.add_argument("--family", action="append", choices=[f.value for f in Family], dest="families",
                   help="only this event family (repeatable; default all)")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    if "families" in args:
        args["families"] = tuple(Family(f) for f in args["families"])
    settings = SimulatorSettings(**args)
    if settings.province not in province_names():
        p.error(f"unknown province {settings.province}; official codes: {', '.join(sorted(province_names()))}")
    return settings


def worker(settings: SimulatorSettings) -> runtime.Worker:
    async def simulate(supervisor: runtime.Supervisor) -> None:
        await run(settings, supervisor.stop)

    return simulate


def main(argv: list[str] | None = None) -> None:
    """Signals, logging and supervision from the service runtime; no restart (a new run would resend its stream)."""
    settings = parse(argv)
    runtime.main("simulator", settings, worker(settings), restart_on=())


if __name__ == "__main__":
    main()
