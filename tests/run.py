"""`make test`: the suite as two pytest runs side by side, one starting with the fault tests, the other with the rest.

The fault tests (`-m slow`: SIGKILL, SIGSTOP past a session timeout, broker loss, chaos rows) mostly wait on the
broker's clocks, so they run one after another in a pytest process of their own while the rest (unit, property and
real-broker tests) runs in another; on 2 cores that roughly halves the suite's wall time. The other run, once done
with the rest, takes the fault tests from the last, and each fault test is run by whichever run claims it first
(`tests/claims.py`), so neither waits idle while the other still has tests to do. The other run's output streams
live; the fault run's output follows when both are done. Each run has a token of its own in its
namespaces (`tests/naming.py`) and deletes only its own topics, and a share of its own of the ports tests hand out.
Arguments go to both runs; with a `-m` of its own the suite runs once, as asked. Exit status: the first failure's
(pytest's 5, "no tests collected", counts as success for one half, which may select nothing, as when the arguments
name only unit tests; not for both, nor for a single run: a suite that ran no test at all is no success).

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


def share(k: int, claims_dir: str) -> dict[str, str]:
    """The environment of run `k` of the two: its own share of the ports tests hand out (`PORT_SHARE`), so that the
    two runs never pick one port at once (`tests.kafkatools.unassigned_ports`); the directory where both claim the
    fault tests; for run 1, the fault tests last, from the last (`tests/claims.py`)."""
    return {**os.environ, PORT_SHARE: f"{k}/2", claims.CLAIMS: claims_dir} | ({claims.SLOW_LAST: "1"} if k else {})


def status(rc: int) -> int:
    return 0 if rc == NO_TESTS else rc


def main(argv: list[str]) -> int:
    if any(a.startswith("-m") for a in argv):  # a marker expression of the caller's: one run, as asked
        return subprocess.call(pytest(argv))
    began = time.monotonic()
    argv = ["-p", "tests.claims", *argv]
    with tempfile.TemporaryFile() as slow_out, tempfile.TemporaryDirectory(prefix="tests-claims-") as claims_dir:
        slow = subprocess.Popen(pytest([*argv, "-m", "slow"]), stdout=slow_out, stderr=subprocess.STDOUT,
                                env=share(0, claims_dir))
        try:
            print(f"tests.run: the fault tests (-m slow) run beside these (pid {slow.pid}); their output follows. "
                  f"These take the fault tests not yet begun there, from the last, once done", flush=True)
            rest_rc = subprocess.call(pytest(argv), env=share(1, claims_dir))
            faults_rc = slow.wait()
        finally:  # interrupted (Ctrl-C, a CI timeout): the fault run does not go on alone
            if slow.poll() is None:
                slow.terminate()
                slow.wait()
        slow_out.seek(0)
        print("\n" + "=" * 30 + " the fault tests (-m slow) " + "=" * 30, flush=True)
        sys.stdout.buffer.write(slow_out.read())
    if rest_rc == faults_rc == NO_TESTS:
        print("\ntests.run: no test collected in either run", flush=True)
        return NO_TESTS
    rest, faults = status(rest_rc), status(faults_rc)
    def said(rc: int) -> str:
        return "passed" if rc == 0 else f"FAILED ({rc})"

    print(f"\ntests.run: everything else (and the fault tests that run took) {said(rest)}, the fault run "
          f"{said(faults)}; {time.monotonic() - began:.0f} s in all", flush=True)
    return rest or faults


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
