"""The chaos command's pure parts: which rows run, when a row counts as clean, and the table it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notify.fake_providers import Received
from tests.chaos.__main__ import chosen
from tests.chaos.injections import FreezeBroker, PartitionWorker, alone, held_roles
from tests.chaos.matrix import MATRIX, NAMES
from tests.chaos.metrics import off
from tests.chaos.notify import NotifyLoad
from tests.chaos.parallel import ended_row, longest_first, next_row, row_from_json, row_json
from tests.chaos.scenario import Counts, RecoversAfterLift, Row, Stage
from tests.chaos.table import HEADER, cells, render
from tests.cluster.tools import Feeder

pytestmark = pytest.mark.unit


def test_fast_selects_only_fast_rows_and_only_narrows_further() -> None:
    """--fast keeps the fast rows (at least one per service); --only picks rows by name, comma-separated or repeated."""
    fast = [s.name for s in chosen([], fast=True)]
    assert fast and all(s.fast for s in chosen([], fast=True))
    assert {name.split("-")[0] for name in fast} == {"intake", "notify", "metrics"}
    assert [s.name for s in chosen([], fast=False)] == list(NAMES)
    assert [s.name for s in chosen([f"{NAMES[1]},{NAMES[0]}"], fast=False)] == [NAMES[0], NAMES[1]]
    assert chosen([NAMES[1]], fast=True) == [s for s in MATRIX[1:2] if s.fast]


def test_an_unknown_row_is_refused() -> None:
    """A misspelt row name stops the command instead of silently running nothing."""
    with pytest.raises(SystemExit, match="unknown row"):
        chosen(["intake-sigkil"], fast=False)


@pytest.mark.parametrize(("counts", "error", "clean"), [
    (Counts(100, 0, 0, 0), "", True),
    (Counts(100, 0, 0, None), "", True),
    (Counts(100, 1, 0, 0), "", False),
    (Counts(100, 0, 3, 0), "", False),
    (Counts(100, 0, 0, 2), "", False),
    (None, "recover: AssertionError", False),
])
def test_a_row_is_clean_only_with_nothing_lost_duplicated_or_reordered(counts: Counts | None, error: str,
                                                                       clean: bool) -> None:
    """Lost, duplicated, out of order or a failure each make the row (and the command's exit code) fail."""
    assert Row("r", counts, 1.0, error).clean is clean


def test_a_row_whose_worker_exited_unbidden_is_not_clean() -> None:
    """A worker that crashed (and was restarted, as a process manager would) fails the row, whatever the counts."""
    assert not Row("r", Counts(100, 0, 0, 0), 1.0, exits=("intake-0 exited 1",)).clean


@pytest.mark.parametrize(("restarts", "bound", "clean"), [(0, 0, True), (1, 0, False), (5, 10, True), (10, 10, True),
                                                        (11, 10, False)])
def test_a_row_is_clean_only_within_its_bound_on_in_process_restarts(restarts: int, bound: int, clean: bool) -> None:
    """Runs restarted in-process up to the row's bound pass (the broker restart's by design); one more fails the row,
    and its note says how many against which bound."""
    row = Row("r", Counts(100, 0, 0, 0), 1.0, restarts=restarts, max_restarts=bound)
    assert row.clean is clean
    note = cells(row)[-1]
    if clean:
        assert not row.restarts_over and "FAILED" not in note
        assert (f"{restarts} runs restarted in-process (bound {bound})" in note) is (restarts > 0)
    else:
        assert note == (f"FAILED: {restarts} runs restarted in-process (`commune_service_restarts_total`), over the "
                        f"row's bound of {bound}")


def test_rows_allow_restarts_only_where_their_fault_ends_runs_by_design() -> None:
    """The broker restart of intake and metrics (a transaction fails), the SIGSTOP of every service (metrics' and
    notify's wake stalled; intake's, when the pause caught a transaction, has it refused by the group), a join
    meeting a group coordinator's failover (a drain past its session), and a frozen broker under intake and metrics
    (the transaction it caught is given up past its timeout; intake's next start may fail as the broker wakes), and
    a network partition of one intake or metrics worker (its transaction given up, its changelog writers fenced) end
    runs by design (README's chaos section); every other row allows none (notify rides a broker restart, a freeze
    and a partition out)."""
    allowed = {s.name: s.max_restarts for s in MATRIX if s.max_restarts}
    assert allowed == {"intake-broker-restart": 10, "metrics-broker-restart": 10, "metrics-sigstop": 2,
                       "notify-sigstop": 2, "intake-sigstop": 2, "intake-group-coordinator-kill-join": 2,
                       "intake-broker-freeze": 4, "metrics-broker-freeze": 2, "intake-partition": 2,
                       "intake-partition-short": 2, "metrics-partition": 2}


def test_broker_freezes_are_slow_rows_on_a_broker_of_their_own_within_the_budget() -> None:
    """A freeze stops a broker: never the shared one, never in `make test`'s fast set; each row stays within 300 s, and
    its recovery must come after the broker woke (notify delivers what it had read while the broker is frozen)."""
    freezes = [s for s in MATRIX if isinstance(s.fault, FreezeBroker)]
    assert {s.name for s in freezes} == {"intake-broker-freeze", "notify-broker-freeze", "metrics-broker-freeze"}
    for s in freezes:
        assert s.broker == "own" and not s.fast and s.budget_s <= 300, s.name
        assert s.recover_s > s.fault.seconds and isinstance(s.fault, RecoversAfterLift)
    assert not any(isinstance(s.fault, RecoversAfterLift) for s in MATRIX if s not in freezes)


def test_network_partitions_are_slow_rows_behind_a_proxy_of_their_own_broker() -> None:
    """A partition cuts one of two workers off a broker of the row's own, through its proxied listener: a row per
    service (intake's twice: healed past and short of its transaction timeout), never in `make test`'s fast set, each
    within 300 s; the cut lasts past the rows' 6 s session timeout."""
    cuts = [s for s in MATRIX if isinstance(s.fault, PartitionWorker)]
    assert {s.name for s in cuts} == {"intake-partition", "intake-partition-short", "notify-partition",
                                      "metrics-partition"}
    for s in cuts:
        assert isinstance(s.fault, PartitionWorker)
        assert s.broker == "proxied" and not s.fast and s.budget_s <= 300, s.name
        assert s.fault.seconds > 6 and s.fault.mode == "blackhole"
        assert getattr(s.load(), "workers", 0) == 2, f"{s.name}: a partition of one worker needs another to take over"
    assert not any(s.broker == "proxied" for s in MATRIX if s not in cuts)


async def test_notify_progress_in_every_partition_needs_an_event_sent_later_in_each(tmp_path: Path) -> None:
    """With `every_partition`, deliveries of events sent before progress was first asked for do not count (a worker
    cut off may still have made those calls), nor later ones in only some partitions: one in each is progress."""
    load = NotifyLoad(spread=True, every_partition=True)
    load.feeder = Feeder("127.0.0.1:1", [], per_second=1, acked=12)
    stage = Stage("127.0.0.1:1", "ns", tmp_path)

    def delivered(*indices: int) -> None:
        for i in indices:
            load.fake.accepted[f"k{i}"] = Received(f"k{i}", "/sms", {"text": f"D-CHAOS-{i}"}, 0.0)

    delivered(*range(12))  # every partition, all sent before
    assert not await load.progressed(stage, since=1.0)
    delivered(12, 13, 14, 15, 16)  # partitions 0-4
    assert not await load.progressed(stage, since=1.0)
    load.feeder.acked = 18
    delivered(17)  # partition 5, sent after progress was first asked for on this clock
    assert await load.progressed(stage, since=1.0)
    assert not await load.progressed(stage, since=2.0)  # a later clock counts from what was sent by then


async def test_a_notify_request_repeated_after_the_heal_is_a_duplicate_beyond_any_allowance(tmp_path: Path) -> None:
    """A notification delivered before the heal and requested again after it was called by the worker cut off (the
    group gave its partition to another meanwhile): a duplicate, whatever the row allows in flight; repeats before the
    heal (in flight when the cut came, sent again by the next owner) stay within the allowance."""
    load = NotifyLoad(events=2, resend_allowance=40)
    load.expected = {("sms", "D-CHAOS-0"), ("sms", "D-CHAOS-1")}
    for i, times in enumerate(([1.0, 2.0], [3.0, 12.0, 13.0])):
        key = f"k{i}"
        load.fake.accepted[key] = Received(key, "/sms", {"text": f"D-CHAOS-{i}"}, times[0])
        load.fake.successes[key], load.fake.replays[key] = 1, len(times) - 1
        load.fake.arrivals.extend((key, at) for at in times)
    stage = Stage("127.0.0.1:1", "ns", tmp_path)
    assert (await load.account(stage)).duplicated == 0  # no partition: 3 repeats within the allowance
    stage.healed_at = 10.0
    counts = await load.account(stage)
    assert (counts.lost, counts.duplicated) == (0, 2) and "2 of them after the heal" in counts.note


def test_table_has_one_line_per_row_with_its_counts_or_failure() -> None:
    """The table lists every row under the header: counts, n/a where order does not apply, or the failure."""
    rows = [Row("intake-x", Counts(8000, 0, 2, 1, "note"), 6.9, seconds=28.0),
            Row("notify-x", Counts(240, 0, 0, None), 15.1, exits=("notify-0 exited 0",)),
            Row("metrics-x", None, None, "setup: AssertionError: boom")]
    lines = render(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(HEADER)
    assert [c.strip() for c in lines[2].strip("|").split("|")][:6] == ["intake-x", "8000", "0", "2", "1", "6.9"]
    assert "n/a" in lines[3] and "exited unbidden (restarted): notify-0 exited 0" in lines[3]
    assert "FAILED: setup: AssertionError: boom" in lines[4]


def test_a_coordinator_kill_targets_a_node_only_when_it_holds_that_role_alone() -> None:
    """Roles from the controller and the coordinators (the group's first); a node holding two is not apart."""
    held = held_roles(3, [1, 2])
    assert held == {"controller": 3, "group": 1, "transaction": 2}
    assert all(alone(held, role) for role in held)
    shared = held_roles(1, [1, 2])
    assert not alone(shared, "controller") and not alone(shared, "group") and alone(shared, "transaction")
    assert held_roles(2, [2]) == {"controller": 2, "group": 2} and not alone(held_roles(2, [2]), "group")


def test_a_metrics_row_names_the_first_series_off_the_oracle() -> None:
    """The note says which series differ and by how much, so a failed row explains itself when its logs are gone; a
    row with exact figures says nothing more."""
    open_08 = ("commune_dossiers_open", (("province", "08"), ("commune", "00001")))
    truth = {("commune_dossiers_open", (("province", "08"), ("commune", "02269"))): 3.0}
    got = {**truth, open_08: 52.0, ("commune_dossiers_overdue", open_08[1]): 52.0}
    assert off(got, truth, shown=1) == ("first off: commune_dossiers_open{province=08,commune=00001} 52 (oracle 0) "
                                        "and 1 more")
    assert off(truth, truth) == ""


@pytest.mark.parametrize("row", [Row("intake-x", Counts(8000, 0, 2, 1, "note"), 6.9, seconds=28.0, restarts=1,
                                     max_restarts=2),
                                 Row("notify-x", Counts(240, 0, 0, None), 15.1, exits=("notify-0 exited 0",)),
                                 Row("metrics-x", None, None, "setup: AssertionError: boom", seconds=3.5)])
def test_a_row_crosses_from_its_process_whole(row: Row) -> None:
    """`--jobs` runs each row in a process of its own, which hands its row back as JSON: every field comes back as
    it was, counts or none, so the table and the exit code read the same as in one process."""
    back = row_from_json(row_json(row))
    assert back == row and back.clean is row.clean and cells(back) == cells(row)


def test_a_row_process_that_ended_without_its_row_fails_the_row(tmp_path: Path) -> None:
    """A row's process killed, or crashed before writing its row, is a failed row (never a missing one, which would
    leave the table short and the command green)."""
    row = ended_row(MATRIX[0], -9, tmp_path / "absent.row.json", began=0.0)
    assert not row.clean and row.scenario == MATRIX[0].name
    assert "exited -9 with no row (FileNotFoundError)" in row.error
    (tmp_path / "torn.row.json").write_text('{"scenario": "intake-sig')
    assert "JSONDecodeError" in ended_row(MATRIX[0], 1, tmp_path / "torn.row.json", began=0.0).error


def test_rows_side_by_side_start_with_the_longest() -> None:
    """The largest budgets first (clusters, then the rows with a broker of their own), so that no long row runs alone
    at the end while the other job idles; every row is run once."""
    order = longest_first(MATRIX)
    assert sorted(s.name for s in order) == sorted(NAMES)
    assert [s.budget_s for s in order] == sorted((s.budget_s for s in MATRIX), reverse=True)
    assert order[0].broker == "cluster"


def test_rows_side_by_side_never_run_two_clusters_at_once() -> None:
    """Beside a cluster's row only a row without one starts (six JVMs on 2 cores slowed a failover past intake's
    transaction timeout); with none running, or none of them a cluster, the first waiting row starts."""
    order = longest_first(MATRIX)
    clusters = [s for s in order if s.broker == "cluster"]
    others = [s for s in order if s.broker != "cluster"]
    assert next_row(order, []) is order[0] and next_row(order, others[:1]) is order[0]
    assert next_row(order, clusters[:1]) is others[0]
    assert next_row(clusters, clusters[:1]) is None
    assert next_row([], []) is None
