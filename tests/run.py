"""`make test`: the suite as three pytest runs side by side (two with TESTS_RUNS=2): the fault tests, the rest, and
the rest from the last.

The fault tests (`-m slow`: SIGKILL, SIGSTOP past a session timeout, broker loss, chaos rows) mostly wait on the
broker's clocks, so they run one after another in a pytest process of their own (the fault run). The rest (unit,
property and real-broker tests) runs in another from the first, and (unless TESTS_RUNS=2) also in a third from the
last, real-broker tests first (the broker run): they mostly wait on the broker and on the services they start, and
on 2 cores the processes were mostly waiting, not computing (CI, 2026-12-07, two runs: the rest run 1,780 s, its
pytest process 441 s of CPU; all processes together 64% of the two cores). The others, once done, take the fault
tests from the last. Each test is run by whichever run claims it first (`tests/claims.py`), so no run waits idle
while another still has its tests to do; with three runs, three fault tests run at once only at the end, when
the fault run has done most of them (first among them the 3-node cluster's, whose package comes early). The rest
run's output streams live; the others' follow when all are done. Each run has a token of its own in its namespaces
(`tests/naming.py`) and deletes only its own topics, and a share of its own of the ports tests hand out. Arguments
go to every run; with a `-m` of its own the suite runs once, as asked. Exit status: the first failure's (pytest's 5,
"no tests collected", counts as success for a run, which may select nothing, as when the arguments name only unit
tests; not for all of them, nor for a single run: a suite that ran no test at all is no success).

    python -m tests.run [pytest arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from tests import claims

NO_TESTS = 5
PORT_SHARE = "TESTS_PORT_SHARE"


def pytest(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "--durations=20", *args]


RUNS = 3
RUNS_ENV = "TESTS_RUNS"
"""How many runs side by side: 3 (the default: the fault run, the rest run and the broker run) or 2 (TESTS_RUNS=2:
no broker run). Three took the suite from 1,786 s to 1,306-1,458 s in CI (2026-12-07). Four of its first five CI
runs failed, each on a test that read or waited on the broker, or on its runs' start-up order, in ways a busier
machine breaks: a simulator's count, a scan read as empty, this runner's own sample, and `test_replay_outage`'s
300 s hang (each mended; the hang's place unknown, every wait in it bounded and named since). Three is the default
since the fifth, on 2d0ccf8, failed on the sample alone (1,325 s)."""
FAULTS, REST, BROKER = range(RUNS)
SELECTS = {FAULTS: ["-m", "slow"], REST: [], BROKER: []}
LANES = {REST: claims.REST_THEN_FAULTS, BROKER: claims.BROKER_FIRST_FROM_THE_LAST}
TITLES = {FAULTS: "the fault tests (-m slow)", REST: "the rest, then fault tests",
          BROKER: "the real-broker tests, then unit and fault tests, from the last"}


def runs() -> int:
    return 2 if os.environ.get(RUNS_ENV) == "2" else 3


def share(k: int, claims_dir: str) -> dict[str, str]:
    """The environment of run `k`: its own share of the ports tests hand out (`PORT_SHARE`), so that no two runs ever
    pick one port at once (`tests.kafkatools.unassigned_ports`); the directory where all claim their tests; its
    order (`tests/claims.py`): none but its own, not one it inherits (the sample runs of `tests/test_run.py`, started
    from the broker run of CI's, took its order for their fault run, which then took the fault tests from the last)."""
    inherited = {name: value for name, value in os.environ.items() if name != claims.LANE}
    lane = {claims.LANE: LANES[k]} if k in LANES else {}
    return {**inherited, PORT_SHARE: f"{k}/{runs()}", claims.CLAIMS: claims_dir} | lane


def status(rc: int) -> int:
    return 0 if rc == NO_TESTS else rc


def main(argv: list[str]) -> int:
    if any(a.startswith("-m") for a in argv):  # a marker expression of the caller's: one run, as asked
        return subprocess.call(pytest(argv))
    began = time.monotonic()
    argv = ["-p", "tests.claims", *argv]
    with tempfile.TemporaryDirectory(prefix="tests-claims-") as claims_dir, \
            tempfile.TemporaryFile() as faults_out, tempfile.TemporaryFile() as broker_out:
        outs = {FAULTS: faults_out, BROKER: broker_out} if runs() == 3 else {FAULTS: faults_out}
        behind = {k: subprocess.Popen(pytest([*argv, *SELECTS[k]]), stdout=out, stderr=subprocess.STDOUT,
                                      env=share(k, claims_dir)) for k, out in outs.items()}
        rcs: dict[int, int] = {}
        try:
            print("tests.run: " + ", ".join(f"{TITLES[k]} (pid {p.pid})" for k, p in behind.items())
                  + " run beside these, their output after; once done, these (and the broker run, if any) take the"
                  " fault tests not yet begun, from the last", flush=True)
            rcs[REST] = subprocess.call(pytest(argv), env=share(REST, claims_dir))
            rcs |= {k: p.wait() for k, p in behind.items()}
        finally:  # interrupted (Ctrl-C, a CI timeout): no run goes on alone
            for p in behind.values():
                if p.poll() is None:
                    p.terminate()
                    p.wait()
        for k, out in outs.items():
            out.seek(0)
            print("\n" + "=" * 30 + f" {TITLES[k]} " + "=" * 30, flush=True)
            sys.stdout.buffer.write(out.read())
            sys.stdout.buffer.flush()
    if all(rc == NO_TESTS for rc in rcs.values()):
        print("\ntests.run: no test collected in any run", flush=True)
        return NO_TESTS
    said = ", ".join(f"{TITLES[k]}: {'passed' if status(rc) == 0 else f'FAILED ({rc})'}"
                     for k, rc in sorted(rcs.items()))
    print(f"\ntests.run: {said}; {time.monotonic() - began:.0f} s in all", flush=True)
    return next((status(rcs[k]) for k in (REST, FAULTS, BROKER) if k in rcs and status(rcs[k])), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
