"""Intake's validation cost in CPU instructions per record, which do not drift with a shared machine.

`python -m bench.instructions [N]` runs `normalise` + `wire.encode` over N simulated dossier records
(default 1,000) of each shape under valgrind's callgrind, once with N records and once with none, and
prints (instructions(N) - instructions(0)) / N. Needs valgrind (Debian package `valgrind`). Not part
of `make bench` (about two minutes). Compare commits by running it in each checkout.
"""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = ("structured", "portal")


def _child(records_file: str, shape: str, n: int) -> None:
    from schemas import wire
    from schemas.events import Family
    from services.intake.normalise import normalise
    from services.intake.outcome import Accepted

    with open(records_file, "rb") as f:
        records = pickle.load(f)
    chosen = [(v, h) for v, h in records if (b"MaHoSo" in v) == (shape == "portal")][:n]
    for value, headers in chosen:
        outcome = normalise(Family.DOSSIER, value, headers)
        if isinstance(outcome, Accepted):
            wire.encode(outcome.event)


def _instructions(records_file: str, shape: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "bench.instructions", "--child", records_file, shape, str(n)],
        capture_output=True, text=True, check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    from schemas.events import Family
    from services.simulator.generate import generate

    records = [(r.value, r.headers) for r in generate(4 * n, seed=42, invalid_share=0.05, families=[Family.DOSSIER])]
    with tempfile.TemporaryDirectory() as tmp:
        records_file = str(Path(tmp) / "records.pkl")
        with open(records_file, "wb") as f:
            pickle.dump(records, f)
        for shape in SHAPES:
            per_record = (_instructions(records_file, shape, n) - _instructions(records_file, shape, 0)) / n
            print(f"{shape:>10}: {per_record:,.0f} instructions per record "
                  f"(normalise + wire.encode, {n} records, 5% malformed)", flush=True)


if __name__ == "__main__":
    main()
