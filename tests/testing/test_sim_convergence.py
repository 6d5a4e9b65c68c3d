"""The simulator's incremental convergence check agrees with the full comparison."""

from __future__ import annotations

import dataclasses
import random

import pytest

from crdtgossip import GCounter, ORSet
from crdtgossip.config import GossipConfig
from crdtgossip.testing.simulation import Simulation

CONFIG = dataclasses.replace(
    GossipConfig.local(), gossip_interval=0.2, push_pull_interval=3.0, reconnect_interval=3.0
)


def _agree(sim: Simulation) -> bool:
    incremental = sim.converged()
    full = sim._convergence.full_check()
    assert incremental == full, f"t={sim.now:.2f}: incremental {incremental}, full {full}"
    return incremental


def _step(sim: Simulation, rng: random.Random, step: int) -> None:
    up = [i for i in range(sim.size) if sim.running(i)]
    down = [i for i in range(sim.size) if not sim.running(i) and not sim.leaving(i)]
    action = rng.choice(("write", "write", "add", "crash", "restart", "leave", "cut", "heal"))
    if action == "crash" and len(up) > 2:
        sim.crash(rng.choice(up))
    elif action == "leave" and len(up) > 2:
        sim.leave(rng.choice(up))
    elif action == "restart" and down:
        sim.restart(rng.choice(down), keep_state=rng.random() < 0.5)
    elif action == "cut":
        order = list(range(sim.size))
        rng.shuffle(order)
        sim.partition(order[:2], order[2:])
    elif action == "heal":
        sim.heal()
    elif action == "add":
        i = rng.choice(up)
        sim.update(i, "set", ORSet, lambda s: s.add(f"e{step}", sim.replica_id(i)))
    else:
        i = rng.choice(up)
        sim.update(i, f"k{step % 3}", GCounter, lambda c: c.increment(sim.replica_id(i)))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("formed", [True, False])
def test_the_incremental_check_agrees_with_the_full_one_through_faults(
    seed: int, formed: bool
) -> None:
    rng = random.Random(seed)
    sim = Simulation(6, seed, CONFIG, loss=0.05, formed=formed)
    while not _agree(sim) and sim.now < 30.0:
        sim.run(0.25)
    for step in range(20):
        _step(sim, rng, step)
        for _ in range(6):
            sim.run(0.25)
            _agree(sim)
    sim.heal()
    sim.set_faults(loss=0.0)
    settled = False
    while not settled and sim.now < 200.0:
        sim.run(0.5)
        settled = _agree(sim)
    assert settled


def test_a_formed_cluster_is_converged_at_once_and_a_joining_one_is_not() -> None:
    formed = Simulation(4, 1, CONFIG, formed=True)
    assert _agree(formed)
    joining = Simulation(4, 1, CONFIG)
    assert not _agree(joining)


def test_a_write_unconverges_until_it_has_spread() -> None:
    sim = Simulation(5, 2, CONFIG, formed=True)
    sim.update(0, "k", GCounter, lambda c: c.increment(sim.replica_id(0)))
    assert not _agree(sim)
    assert sim.run_until(lambda: _agree(sim), 5.0, check_interval=0.05)


def test_a_key_only_a_crashed_node_held_differently_no_longer_counts() -> None:
    sim = Simulation(3, 3, CONFIG, formed=True)
    sim.partition([0, 1], [2])
    sim.update(2, "k", GCounter, lambda c: c.increment(sim.replica_id(2)))
    sim.run(0.5)
    assert not _agree(sim)  # n2 holds a write the others do not
    sim.crash(2)
    sim.heal()
    assert sim.run_until(lambda: _agree(sim), 60.0, check_interval=0.5)
    assert sim.get(0, "k", GCounter).value == 0  # the write died with n2
