"""Retired replica ids: a node alive under another id never writes as the old one."""

from __future__ import annotations

import dataclasses

from crdtgossip import GCounter, ORSet
from crdtgossip.config import GossipConfig
from crdtgossip.protocol.retirement import owner, retired
from crdtgossip.protocol.rollback import fresh_replica_id
from crdtgossip.testing import Simulation


def test_owner_reads_the_node_id_of_a_fresh_replica_id_and_nothing_else() -> None:
    assert owner(fresh_replica_id("n1")) == "n1"
    assert owner("web.a.0123456789abcdef") == "web.a"  # the last dot
    assert owner("n3.0") == "n3"  # the simulator's: its generation
    for other in ("n1", "n1.0123456789ABCDEF", "n1.", ".0123456789abcdef",
                  "n1.0123456789abcdef0", "n1-0123456789abcdef", "replica-a"):  # fmt: skip
        assert owner(other) is None, other


def test_retired_needs_the_node_alive_under_another_known_id() -> None:
    old, new = "n1.0000000000000001", "n1.0000000000000002"
    assert retired([old, new, "custom"], {"n1": new}) == {old}
    assert retired([old], {"n1": old}) == set()  # its own current id
    assert retired([old], {}) == set()  # not alive, or its id not known yet
    assert retired(["n2.0000000000000001"], {"n1": new}) == set()


def test_a_node_restarted_without_its_state_retires_its_old_replica_everywhere() -> None:
    config = dataclasses.replace(GossipConfig.local(), push_pull_interval=1.0)
    sim = Simulation(3, 11, config, formed=True)
    old = sim.replica_id(0)
    sim.update(0, "hits", GCounter, lambda c: c.increment(old))
    sim.update(0, "set", ORSet, lambda s: s.add("x", old))
    assert sim.run_until_converged(10.0).converged
    assert all(sim.engine(i).retired_replicas() == set() for i in range(3))
    sim.crash(0)
    sim.run(1.0)
    sim.restart(0, keep_state=False)
    assert sim.replica_id(0) != old
    assert sim.run_until(
        lambda: all(sim.engine(i).retired_replicas() == {old} for i in (1, 2)), 30.0
    )
    # The restarted node holds the old replica's count again, from its peers.
    assert sim.run_until(lambda: sim.engine(0).retired_replicas() == {old}, 30.0)


def test_a_node_restarted_with_its_state_keeps_its_id_and_retires_nothing() -> None:
    config = dataclasses.replace(GossipConfig.local(), push_pull_interval=1.0)
    sim = Simulation(3, 12, config, formed=True)
    sim.update(0, "hits", GCounter, lambda c: c.increment(sim.replica_id(0)))
    assert sim.run_until_converged(10.0).converged
    sim.crash(0)
    sim.run(1.0)
    sim.restart(0, keep_state=True)
    assert sim.run_until_converged(30.0).converged
    assert all(sim.engine(i).retired_replicas() == set() for i in range(3))
