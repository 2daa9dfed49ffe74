"""`python -m services.simulator`: realistic raw traffic for the real communes of one province, or of the country.

    python -m services.simulator --province 20 --rate 50 --duration 60 --invalid-share 0.05 --namespace NS --seed 1
    python -m services.simulator --national --profile daily          # 3,321 communes, national rates, real time
    python -m services.simulator --national --profile peak --duration 60   # the national peak hour, held
"""

from __future__ import annotations

import argparse

from schemas.admin import province_names
from schemas.events import Family
from services.common import runtime
from services.common.refused import settings_checked
from services.simulator.producer import run
from services.simulator.settings import SimulatorSettings


def parse(argv: list[str] | None = None) -> SimulatorSettings:
    p = argparse.ArgumentParser(prog="python -m services.simulator", description=__doc__.splitlines()[0])
    p.add_argument("--province", help="official 2-digit province code (default 20, Lạng Sơn)")
    p.add_argument("--national", action="store_true", default=None,
                   help="all 34 provinces and 3,321 communes at the national rate derived from DOMAIN.md "
                        "(6.56 records/s a week's average, 31.3 at the peak hour), in real time")
    p.add_argument("--profile", choices=["flat", "daily", "peak"],
                   help="rate by simulated time of day: flat (default), daily (morning peak, quiet weekends), "
                        "peak (the peak hour's rate held)")
    p.add_argument("--rate", type=float, help="mean records per second, one province (default 50)")
    p.add_argument("--duration", type=float, help="seconds to run, 0 = until Ctrl-C (default 0)")
    p.add_argument("--invalid-share", type=float, help="fraction of deliberately bad records (default 0.05)")
    p.add_argument("--namespace", help="topic prefix, as schemas.topics.scoped (default none)")
    p.add_argument("--seed", type=int, help="random seed (default: random)")
    p.add_argument("--bootstrap", help="Kafka bootstrap (default env KAFKA_BOOTSTRAP or 127.0.0.1:9092; "
                   "TLS/SASL from KAFKA_*)")
    p.add_argument("--day-seconds", type=float,
                   help="real seconds per simulated day (default 10; national 86400, less speeds it up)")
    p.add_argument("--backfill-days", type=float, help="how far back event times reach (default 14)")
    p.add_argument("--family", action="append", choices=[f.value for f in Family], dest="families",
                   help="only this event family (repeatable; default all)")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    if "families" in args:
        args["families"] = tuple(Family(f) for f in args["families"])
    with settings_checked("simulator"):
        settings = SimulatorSettings(**args)
    if settings.national and "rate" in args:
        p.error("--rate does not apply with --national: the rate is derived from DOMAIN.md (use --day-seconds "
                "to compress time, --profile to shape it)")
    if not settings.national and settings.province not in province_names():
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
