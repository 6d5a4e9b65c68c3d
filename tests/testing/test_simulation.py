"""The simulator: data and membership spread, faults act, a seed replays a run exactly."""

from __future__ import annotations

import pytest

from crdtgossip import GCounter, ORSet
from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError, CRDTGossipError, MergeError
from crdtgossip.protocol import Status
from crdtgossip.protocol.messages import Suspect, encode_frame, encode_message
from crdtgossip.testing.chaos import main
from crdtgossip.testing.simulation import RunResult, Simulation
from tests.protocol.known_alive import check_known_alive

LOCAL = GossipConfig.local()


def _bump(sim: Simulation, i: int, key: str = "hits", n: int = 1) -> GCounter:
    return sim.update(i, key, GCounter, lambda c: c.increment(sim.replica_id(i), n))


def _statuses(sim: Simulation, observer: int) -> dict[str, Status]:
    return {m.node_id: m.status for m in sim.members(observer)}


def test_an_update_reaches_every_node() -> None:
    sim = Simulation(nodes=6, seed=7, config=LOCAL)
    assert sim.run_until_converged(max_seconds=30.0).converged
    _bump(sim, 0, n=3)
    result = sim.run_until_converged(max_seconds=30.0)
    assert result.converged
    assert [sim.get(i, "hits", GCounter).value for i in range(6)] == [3] * 6
    assert result.messages > 0
    assert result.bytes > result.messages
    assert result.gossip_rounds == pytest.approx(result.virtual_seconds / LOCAL.gossip_interval)


def test_update_returns_the_new_state_and_get_of_an_absent_key_is_empty() -> None:
    sim = Simulation(nodes=2, seed=1, config=LOCAL)
    assert _bump(sim, 1, n=2).value == 2
    assert sim.get(0, "absent", ORSet).value == frozenset()


def test_the_same_seed_replays_a_run_exactly_and_another_seed_differs() -> None:
    def run(seed: int) -> tuple[RunResult, int, int]:
        sim = Simulation(8, seed, LOCAL, loss=0.2, delay=(0.001, 0.02), duplicate=0.1)
        sim.run(2.0)
        _bump(sim, 3)
        sim.partition([0, 1, 2], [3, 4, 5, 6, 7])
        sim.run(3.0)
        sim.heal()
        # Under 20% loss some member is suspected somewhere at most instants, so the
        # cluster need not settle: the faults stop with the partition (as in run_chaos).
        sim.set_faults(loss=0.0, duplicate=0.0)
        return sim.run_until_converged(60.0), sim.frames_sent, sim.bytes_sent

    first = run(11)
    assert first[0].converged
    assert run(11) == first
    assert run(12) != first


def test_a_partition_holds_until_healed_and_both_sides_writes_merge() -> None:
    sim = Simulation(nodes=5, seed=3, config=LOCAL)
    assert sim.run_until_converged(30.0).converged
    sim.partition([0, 1, 2], [3, 4])
    _bump(sim, 0, n=1)
    _bump(sim, 4, n=10)

    def values() -> list[int]:
        return [sim.get(i, "hits", GCounter).value for i in range(5)]

    # Gossip may spend a delta's few transmits on the far side, where they are lost;
    # anti-entropy within each side then brings it, within two exchange intervals.
    assert sim.run_until(lambda: values() == [1, 1, 1, 10, 10], 2 * LOCAL.push_pull_interval)
    sim.run(1.0)
    assert values() == [1, 1, 1, 10, 10]
    assert not sim.converged()
    sim.heal()
    assert sim.run_until_converged(120.0).converged
    assert {sim.get(i, "hits", GCounter).value for i in range(5)} == {11}
    assert all(set(_statuses(sim, i).values()) == {Status.ALIVE} for i in range(5))


def test_a_node_left_out_of_every_group_is_cut_from_all() -> None:
    sim = Simulation(nodes=3, seed=5, config=LOCAL)
    assert sim.run_until_converged(30.0).converged
    sim.partition([0, 1])
    _bump(sim, 2)
    sim.run(3.0)
    assert sim.get(0, "hits", GCounter).value == 0


def test_a_crashed_node_is_declared_dead_and_the_rest_converge() -> None:
    sim = Simulation(nodes=5, seed=4, config=LOCAL)
    assert sim.run_until_converged(30.0).converged
    sim.crash(2)
    assert not sim.running(2)
    assert not sim.converged()  # the others still see it alive
    assert sim.run_until_converged(120.0).converged
    assert _statuses(sim, 0)["n2"] is Status.DEAD


def test_restart_without_state_takes_a_new_replica_id_and_a_higher_incarnation() -> None:
    sim = Simulation(nodes=4, seed=6, config=LOCAL)
    _bump(sim, 1, n=5)
    assert sim.run_until_converged(30.0).converged
    old_replica, old_incarnation = sim.replica_id(1), sim.engine(1).incarnation
    sim.crash(1)
    sim.run(2.0)
    sim.restart(1, keep_state=False)
    assert sim.replica_id(1) != old_replica
    assert sim.engine(1).incarnation > old_incarnation
    assert sim.engine(1).keys() == []
    assert sim.run_until_converged(120.0).converged
    assert sim.get(1, "hits", GCounter).value == 5  # its old writes came back from peers
    _bump(sim, 1)
    assert sim.run_until_converged(30.0).converged
    assert sim.get(3, "hits", GCounter).value == 6


def test_restart_with_state_keeps_the_data_and_the_replica_id() -> None:
    sim = Simulation(nodes=3, seed=8, config=LOCAL)
    assert sim.run_until_converged(30.0).converged
    sim.partition([0], [1, 2])
    _bump(sim, 0, n=4)  # only node 0 has it
    sim.crash(0)
    replica = sim.replica_id(0)
    sim.heal()
    sim.run(10.0)
    assert sim.get(1, "hits", GCounter).value == 0
    sim.restart(0, keep_state=True)
    assert sim.replica_id(0) == replica
    assert sim.get(0, "hits", GCounter).value == 4
    assert sim.run_until_converged(120.0).converged
    assert sim.get(2, "hits", GCounter).value == 4


def test_a_node_that_leaves_is_left_everywhere() -> None:
    sim = Simulation(nodes=4, seed=9, config=LOCAL)
    assert sim.run_until_converged(30.0).converged
    sim.leave(3)
    assert not sim.running(3)
    assert sim.run_until_converged(30.0).converged
    assert all(_statuses(sim, i)["n3"] is Status.LEFT for i in range(3))
    sim.restart(3, keep_state=False)
    assert sim.run_until_converged(60.0).converged
    assert _statuses(sim, 0)["n3"] is Status.ALIVE


def test_duplication_and_reordering_do_not_break_convergence() -> None:
    sim = Simulation(6, 10, LOCAL, loss=0.1, duplicate=1.0, reorder=0.5, delay=(0.0, 0.05))
    for i in range(6):
        _bump(sim, i, n=i + 1)
    assert sim.run_until_converged(120.0).converged
    assert sim.get(5, "hits", GCounter).value == 21


def test_a_formed_cluster_starts_with_every_member_alive_and_nothing_queued() -> None:
    sim = Simulation(nodes=30, seed=2, formed=True)
    assert all(set(_statuses(sim, i).values()) == {Status.ALIVE} for i in range(30))
    assert len(sim.members(7)) == 30
    assert sim.engine(7).stats()["queue_length"] == 0
    sim.update(7, "k", GCounter, lambda c: c.increment(sim.replica_id(7)))
    assert sim.holders("k") == 1
    assert sim.run_until(lambda: sim.holders("k") == 30, 30.0)
    assert sim.now < 30.0


def _member(sim: Simulation, observer: int, node_id: str) -> tuple[Status, int]:
    found = [m for m in sim.members(observer) if m.node_id == node_id]
    assert len(found) == 1
    return found[0].status, found[0].incarnation


def test_the_nodes_of_a_formed_cluster_share_no_membership_change() -> None:
    # The engines of a formed cluster share one member table until each changes it.
    sim = Simulation(nodes=12, seed=4, config=LOCAL, formed=True)
    frame = encode_frame(
        "n1", [encode_message(Suspect("n5", 0, "n1")), encode_message(Suspect("n9", 0, "n1"))]
    )
    sim.engine(0).receive(frame, sim.address(1), sim.now)  # n0 suspects n5; n9 refutes
    sim.engine(9).receive(frame, sim.address(1), sim.now)
    sim.leave(7)
    assert _member(sim, 0, "n5") == (Status.SUSPECT, 0)
    assert _member(sim, 9, "n9") == (Status.ALIVE, 1)
    assert _member(sim, 7, "n7") == (Status.LEFT, 0)
    for observer in (1, 2, 5, 11):
        assert _member(sim, observer, "n5") == (Status.ALIVE, 0)
        assert _member(sim, observer, "n9") == (Status.ALIVE, 0)
        assert _member(sim, observer, "n7") == (Status.ALIVE, 0)
        assert sim.engine(observer).stats()["members_alive"] == 12

    def spread() -> bool:
        return all(
            _member(sim, i, "n9") == (Status.ALIVE, 1) and _member(sim, i, "n7")[0] is Status.LEFT
            for i in range(12)
            if i != 7  # gone, it hears nothing more
        )

    assert sim.run_until(spread, 10.0)  # once the news spreads, everyone agrees


def test_holders_forgets_a_node_restarted_without_state() -> None:
    sim = Simulation(nodes=3, seed=12, config=LOCAL)
    _bump(sim, 0)
    assert sim.run_until_converged(30.0).converged
    assert sim.holders("hits") == 3
    sim.crash(2)
    sim.restart(2, keep_state=False)
    assert sim.holders("hits") == 2


def test_misuse_raises() -> None:
    with pytest.raises(ConfigError):
        Simulation(nodes=0, seed=1)
    with pytest.raises(ConfigError):
        Simulation(nodes=2, seed=1, loss=1.5)
    with pytest.raises(ConfigError):
        Simulation(nodes=2, seed=1, delay=(0.5, 0.1))
    sim = Simulation(nodes=3, seed=1, config=LOCAL)
    with pytest.raises(ConfigError):
        sim.partition([0, 1], [1, 2])
    with pytest.raises(ConfigError):
        sim.crash(3)
    with pytest.raises(CRDTGossipError):
        sim.restart(0, keep_state=True)
    _bump(sim, 0)
    with pytest.raises(MergeError):
        sim.get(0, "hits", ORSet)
    with pytest.raises(MergeError):
        sim.update(0, "hits", GCounter, lambda c: ORSet())
    sim.crash(0)
    with pytest.raises(CRDTGossipError):
        sim.crash(0)
    with pytest.raises(CRDTGossipError):
        _bump(sim, 0)
    with pytest.raises(CRDTGossipError):
        sim.leave(0)


def test_the_command_line_replays_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--replay", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed=3" in out
    assert "python -m crdtgossip.testing.chaos --replay 3" in out


def test_the_command_line_requires_a_mode() -> None:
    with pytest.raises(SystemExit):
        main([])


def test_a_node_crashed_while_leaving_counts_as_left() -> None:
    sim = Simulation(nodes=4, seed=13, config=LOCAL)
    assert sim.run_until_converged(30.0).converged
    sim.leave(1)
    sim.crash(1)
    assert sim.run_until_converged(60.0).converged
    assert _statuses(sim, 0)["n1"] in (Status.LEFT, Status.DEAD)
    assert _statuses(sim, 0)["n1"] is _statuses(sim, 3)["n1"]


def test_a_hundred_nodes_joining_through_one_seed_all_see_all() -> None:
    sim = Simulation(nodes=100, seed=1)
    assert sim.run_until_converged(max_seconds=60.0).converged
    for i in (0, 1, 57, 99):
        members = sim.members(i)
        assert len(members) == 100
        assert all(m.status is Status.ALIVE for m in members)


def test_a_formed_run_shares_again_the_rows_a_refutation_changed_everywhere() -> None:
    nodes = 20
    sim = Simulation(nodes=nodes, seed=3, loss=0.3, formed=True)
    sim.run(10.0)  # false suspicions, refuted at higher incarnations
    sim.set_faults(loss=0.0)
    assert sim.run_until_converged(max_seconds=60.0).converged
    sim.run(2.0)  # past the next rebase
    refuted = [m for m in sim.members(0) if m.incarnation > 0]
    assert refuted  # the run did change rows everywhere
    # Each engine's own rows (its local row, plus copies of the rows it changed): the
    # refutations every engine heard alike are shared again, not copied N times.
    own = sum(len(sim.engine(i)._membership._members) for i in range(nodes))
    assert own < nodes + len(refuted) * nodes // 2


def test_joining_engines_share_the_packed_rumors_and_names_they_queue() -> None:
    # Each of N joining nodes queues a rumor of each of N members: N² items, but
    # only N distinct packed messages and names between them (bytes shared in the
    # process, not copied per engine).
    sim = Simulation(nodes=12, seed=3, config=LOCAL)
    sim.run(0.05)
    items = [
        item
        for i in range(sim.size)
        for item in sim.engine(i)._queue.items()
        if item.name[0] == "member"
    ]
    assert len(items) > 3 * sim.size
    rumors = {(item.name, item.packed) for item in items}
    assert len({id(item.packed) for item in items}) == len(rumors)
    assert len({id(item.name) for item in items}) == len({item.name for item in items})


def test_every_engine_knows_alive_what_its_rows_say_through_a_lossy_life() -> None:
    # Membership.known_alive answers from its own bookkeeping, not the rows: held to
    # the rows after suspicions, refutations, deaths, rebases, a crash and a restart.
    for formed in (True, False):
        sim = Simulation(nodes=12, seed=5, loss=0.3, formed=formed)
        sim.run(4.0)
        sim.crash(3)
        sim.run(4.0)
        sim.restart(3, keep_state=False)
        sim.leave(5)
        sim.run(6.0)
        for i in range(sim.size):
            check_known_alive(sim.engine(i)._membership)
