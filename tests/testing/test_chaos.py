"""Seeded mixed-fault scenarios: after the faults stop, everything converges, nothing is lost.

Each scenario (:func:`crdtgossip.testing.simulation.run_chaos`) draws a cluster of 3
to 20 nodes and a mix of datagram loss, delay, duplication, reordering, partitions,
crashes, restarts with and without state and leaves, then checks the invariants. A
failure prints the seed and the command that replays it; the soak of 10,000 runs is
``python -m crdtgossip.testing.chaos --soak 10000``.
"""

from __future__ import annotations

import io
import math

import pytest

from crdtgossip import ORSet
from crdtgossip.config import GossipConfig
from crdtgossip.testing import Simulation
from crdtgossip.testing.chaos import (
    _DELETED_KEY,
    CHAOS_MAX_NODES,
    CHAOS_MIN_NODES,
    ChaosOutcome,
    _check_deletes,
    _Lineage,
    replay_command,
    run_chaos,
    soak,
)

#: Scenarios in the normal suite (issue 5: at least 500), run in batches so a failure
#: names a small range of seeds and the progress shows.
SCENARIOS = 500
BATCH = 25


@pytest.mark.slow
@pytest.mark.parametrize("first", range(0, SCENARIOS, BATCH))
def test_chaos_scenarios_converge_and_lose_nothing(first: int) -> None:
    failed = [
        outcome for seed in range(first, first + BATCH) if not (outcome := run_chaos(seed)).ok
    ]
    assert not failed, "\n".join(outcome.describe() for outcome in failed)


def test_scenarios_cover_the_sizes_and_every_fault() -> None:
    outcomes = [run_chaos(seed) for seed in range(40)]
    sizes = {outcome.nodes for outcome in outcomes}
    assert min(sizes) == CHAOS_MIN_NODES
    assert max(sizes) <= CHAOS_MAX_NODES
    assert len(sizes) > 3
    done = " ".join(action for outcome in outcomes for action in outcome.actions)
    for fault in (
        "partition",
        "crash",
        "restart n",
        "keep_state=True",
        "keep_state=False",
        "leave",
        "increment",
        "add",
        "put p",
        "delete on",
        "loss=0.2",
        "duplicate=0.2",
        "reorder=0.1",
    ):
        assert fault in done
    for outcome in outcomes:
        assert outcome.settle_seconds <= outcome.bound_seconds


def test_a_seed_replays_the_same_scenario() -> None:
    first, again = run_chaos(77), run_chaos(77)
    assert first.actions == again.actions
    assert first.settle_seconds == again.settle_seconds
    assert run_chaos(78).actions != first.actions


def test_a_forced_size_is_used() -> None:
    assert run_chaos(5, nodes=4).nodes == 4


def test_a_failure_report_names_the_seed_and_the_replay_command() -> None:
    outcome = ChaosOutcome(seed=123, nodes=4, actions=["crash n1"], failures=["lost"])
    assert not outcome.ok
    report = outcome.describe()
    assert "seed=123" in report
    assert "FAILED" in report
    assert "broke: lost" in report
    assert replay_command(123) in report
    assert replay_command(123) == "python -m crdtgossip.testing.chaos --replay 123"
    assert math.isnan(outcome.settle_seconds)


def test_soak_reports_a_summary() -> None:
    out = io.StringIO()
    assert soak(3, first_seed=500, out=out) == []
    assert "3 chaos scenarios (seeds 500..502): 3 held, 0 failed" in out.getvalue()


def test_the_delete_checks_catch_a_lost_put_and_a_delete_that_left_something() -> None:
    sim = Simulation(3, 1, GossipConfig.local(), formed=True)
    sim.update(0, _DELETED_KEY, ORSet, lambda s: s.add("kept", sim.replica_id(0)))
    lineages = [_Lineage() for _ in range(3)]
    lineages[0].puts = {"kept": False, "lost": False}
    outcome = ChaosOutcome(1, 3)
    _check_deletes(sim, lineages, outcome)
    assert outcome.failures == ["puts no delete saw, lost: ['lost']"]
    lineages[0].puts = {"kept": True}
    lineages[0].all_deleted = True
    outcome = ChaosOutcome(1, 3)
    _check_deletes(sim, lineages, outcome)
    assert outcome.failures == ["a delete that saw every put left ['kept']"]
