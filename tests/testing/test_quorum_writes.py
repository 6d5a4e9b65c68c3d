"""Quorum writes in the simulator, and the chaos check that no acknowledged one is lost."""

from __future__ import annotations

from crdtgossip import AtLeast, Local, Majority, ORSet
from crdtgossip.testing.chaos import (
    ChaosOutcome,
    _check_quorum_writes,
    _Lineage,
    _QuorumWrite,
    run_chaos,
)
from crdtgossip.testing.simulation import Simulation


def _formed(nodes: int, seed: int) -> Simulation:
    sim = Simulation(nodes, seed, formed=True)
    sim.run(1.0)
    return sim


def _add(sim: Simulation, i: int, element: str) -> object:
    return lambda s: s.add(element, sim.replica_id(i))


def test_a_majority_write_is_acknowledged_by_a_majority_that_merged_it() -> None:
    sim = _formed(5, 1)
    request = sim.write(0, "k", ORSet, _add(sim, 0, "x"), Majority(timeout=1.0))
    assert sim.quorum_result(0, request) is None  # nothing answered yet: no virtual time
    assert sim.run_until(lambda: sim.quorum_result(0, request) is not None, 2.0)
    result = sim.quorum_result(0, request)
    assert result is not None
    assert (result.ok, result.answered, result.needed) == (True, 3, 3)
    holders = sum("x" in sim.get(i, "k", ORSet).value for i in range(5))
    assert holders >= 3


def test_a_write_cut_off_from_a_majority_fails_at_its_deadline_and_stays_local() -> None:
    sim = _formed(5, 2)
    sim.partition([0, 1], [2, 3, 4])
    start = sim.now
    request = sim.write(0, "k", ORSet, _add(sim, 0, "x"), Majority(timeout=1.0))
    assert sim.run_until(lambda: sim.quorum_result(0, request) is not None, 5.0)
    result = sim.quorum_result(0, request)
    assert result is not None
    assert (result.ok, result.answered, result.needed) == (False, 2, 3)
    assert 1.0 <= sim.now - start < 1.1
    assert "x" in sim.get(0, "k", ORSet).value


def test_local_and_at_least_one_succeed_at_once() -> None:
    sim = _formed(3, 3)
    for level in (Local(), AtLeast(1)):
        request = sim.write(1, "k", ORSet, _add(sim, 1, "y"), level)
        result = sim.quorum_result(1, request)
        assert result is not None
        assert result.ok


def test_the_check_reports_an_acknowledged_write_missing_from_the_final_state() -> None:
    sim = _formed(3, 4)
    request = sim.write(0, "k", ORSet, _add(sim, 0, "x"), Majority(timeout=1.0))
    assert sim.run_until(lambda: sim.quorum_result(0, request) is not None, 2.0)
    lineages = [_Lineage() for _ in range(3)]
    outcome = ChaosOutcome(seed=0, nodes=3)
    # The write of "x" was acknowledged; the check looks for its element in the chaos
    # set key, where nothing was written: it must call the write lost.
    _check_quorum_writes(sim, lineages, [_QuorumWrite(0, request, "x", 2, (0, 0, 0))], outcome)
    assert len(outcome.failures) == 1
    assert "acknowledged majority add x lost" in outcome.failures[0]
    # Had two of the three nodes lost their state since, no loss could be claimed.
    lineages[1].wiped = lineages[2].wiped = 1
    excused = ChaosOutcome(seed=0, nodes=3)
    _check_quorum_writes(sim, lineages, [_QuorumWrite(0, request, "x", 2, (0, 0, 0))], excused)
    assert excused.failures == []


def test_chaos_scenarios_acknowledge_majority_writes_and_keep_them() -> None:
    acknowledged = 0
    for seed in range(40):
        outcome = run_chaos(seed)
        assert outcome.ok, outcome.describe()
        acknowledged += sum(action.endswith(": acknowledged") for action in outcome.actions)
    assert acknowledged >= 10  # the invariant was exercised, not vacuously true
