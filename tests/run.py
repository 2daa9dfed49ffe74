"""`make test`: the suite as two pytest runs side by side, the fault tests in one, everything else in the other.

The fault tests (`-m slow`: SIGKILL, SIGSTOP past a session timeout, broker loss, chaos rows) mostly wait on the
broker's clocks, so they run one after another in their own pytest process while the rest (`-m "not slow"`: unit,
property and real-broker tests) runs in another; on 2 cores that roughly halves the suite's wall time. The rest's
output streams live; the fault run's output follows when both are done. Each run has a token of its own in its
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

NO_TESTS = 5
PORT_SHARE = "TESTS_PORT_SHARE"


def pytest(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "--durations=20", *args]


def share(k: int) -> dict[str, str]:
    """The environment of run `k` of the two: its own share of the ports tests hand out (`PORT_SHARE`), so that the
    two runs never pick one port at once (`tests.kafkatools.unassigned_ports`)."""
    return {**os.environ, PORT_SHARE: f"{k}/2"}


def status(rc: int) -> int:
    return 0 if rc == NO_TESTS else rc


def main(argv: list[str]) -> int:
    if any(a.startswith("-m") for a in argv):  # a marker expression of the caller's: one run, as asked
        return subprocess.call(pytest(argv))
    began = time.monotonic()
    with tempfile.TemporaryFile() as slow_out:
        slow = subprocess.Popen(pytest([*argv, "-m", "slow"]), stdout=slow_out, stderr=subprocess.STDOUT,
                                env=share(0))
        try:
            print(f"tests.run: the fault tests (-m slow) run beside these (pid {slow.pid}); their output follows",
                  flush=True)
            rest_rc = subprocess.call(pytest([*argv, "-m", "not slow"]), env=share(1))
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
    print(f"\ntests.run: everything else {'passed' if rest == 0 else f'FAILED ({rest})'}, the fault tests "
          f"{'passed' if faults == 0 else f'FAILED ({faults})'}; {time.monotonic() - began:.0f} s in all", flush=True)
    return rest or faults


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
