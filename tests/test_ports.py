"""The ports tests hand to brokers and services they start: never in the kernel's ephemeral range, where an outgoing
connection could take one between the pick and the bind."""

from __future__ import annotations

import socket

import pytest

from tests import kafkatools
from tests.kafkatools import free_port, free_port_run, shared, unassigned_ports
from tests.run import PORT_SHARE, RUNS, RUNS_ENV, share

pytestmark = pytest.mark.unit


def ephemeral() -> range:
    """The kernel's ephemeral range; the test is skipped where it can't be read (not Linux) or leaves no room."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except OSError:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range: not Linux")
    if unassigned_ports() == range(1024, 65536):
        pytest.skip(f"the ephemeral range {low}-{high} leaves no room outside it")
    return range(low, high + 1)


def test_ports_given_are_outside_the_ephemeral_range_and_never_given_twice() -> None:
    given = [free_port() for _ in range(200)] + list(range(base := free_port_run(6), base + 6))
    assert len(set(given)) == len(given)
    outside = ephemeral()
    assert [p for p in given if p in outside] == []
    assert all(p in unassigned_ports() for p in given)


def test_a_run_is_consecutive_and_each_port_can_be_bound() -> None:
    base = free_port_run(6)
    held = []
    try:
        for port in range(base, base + 6):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
    finally:
        for s in held:
            s.close()


def test_a_port_someone_listens_on_or_given_before_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_port_run(3)
    monkeypatch.setattr(kafkatools, "_GIVEN", set())
    monkeypatch.setattr(kafkatools, "unassigned_ports", lambda: range(base, base + 3))
    with socket.create_server(("127.0.0.1", base)), socket.create_server(("127.0.0.1", base + 2)):
        assert free_port() == base + 1
        with pytest.raises(RuntimeError, match="no 1 consecutive free ports"):
            free_port_run(1, attempts=50)


def test_the_runs_of_make_test_pick_from_disjoint_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tests.run` gives its pytest runs shares 0/2 and 1/2 (0/3, 1/3 and 2/3 with three); two shares are disjoint,
    each about half; no share (or a bad one) is the whole range."""
    ports = range(20000, 32768)
    first, second = shared(ports, "0/2"), shared(ports, "1/2")
    assert first.stop == second.start and first.start == ports.start and len(first) == len(second) == len(ports) // 2
    assert shared(ports, "") == shared(ports, "2/2") == shared(ports, "x") == ports
    monkeypatch.delenv(RUNS_ENV, raising=False)  # three by default
    assert [share(k, "claims")[PORT_SHARE] for k in range(RUNS)] == ["0/3", "1/3", "2/3"]
    monkeypatch.setenv(RUNS_ENV, "2")
    assert [share(k, "claims")[PORT_SHARE] for k in range(2)] == ["0/2", "1/2"]
    monkeypatch.delenv(PORT_SHARE, raising=False)
    whole = unassigned_ports()
    monkeypatch.setenv(PORT_SHARE, "1/2")
    assert unassigned_ports() == shared(whole, "1/2")
    assert all(free_port() in shared(whole, "1/2") for _ in range(50))
