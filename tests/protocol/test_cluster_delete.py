"""A cluster-wide delete: every member drops the writes the deleter saw, a write it did
not see wins, and no member that was away brings the old state back."""

from __future__ import annotations

import dataclasses
import random

from crdtgossip import GCounter, ORSet
from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.consistency import Majority
from crdtgossip.keylife import wrap
from crdtgossip.protocol import Engine
from crdtgossip.protocol.messages import Delta, encode_frame, encode_message
from crdtgossip.testing import Simulation


def _config(**changes: object) -> GossipConfig:
    return dataclasses.replace(GossipConfig.local(), push_pull_interval=1.0, **changes)


def _count(sim: Simulation, i: int, key: str, n: int = 1) -> None:
    replica = sim.engine(i).replica_id
    sim.update(i, key, GCounter, lambda c: c.increment(replica, n))


def _values(sim: Simulation, key: str) -> list[int | None]:
    return [
        None if (state := sim.engine(i).get(key)) is None else state.value  # type: ignore[attr-defined]
        for i in range(sim.size)
    ]


def test_a_delete_reaches_every_member_and_leaves_a_tombstone() -> None:
    sim = Simulation(5, 1, _config(), formed=True)
    for i in range(5):
        _count(sim, i, "k", i + 1)
    assert sim.run_until_converged(10.0).converged
    assert _values(sim, "k") == [15] * 5
    assert sim.delete(2, "k") is True
    assert sim.run_until(lambda: _values(sim, "k") == [None] * 5, 5.0)
    for i in range(5):
        engine = sim.engine(i)
        assert engine.is_tombstone("k")
        assert engine.stats()["keys_deleted"] == 1
        assert engine.stats()["tombstones"] == 1
    assert sim.run_until_converged(10.0).converged


def _deleted_apart(seed: int, writer: int, n: int) -> Simulation:
    """3 nodes; ``writer`` counts ``n`` into "k", everyone converges, node 2 is cut off,
    and node 0 deletes the key (node 2 does not hear of it)."""
    sim = Simulation(3, seed, _config(), formed=True)
    _count(sim, writer, "k", n)
    assert sim.run_until_converged(10.0).converged
    sim.partition([0, 1], [2])
    sim.delete(0, "k")
    return sim


def test_a_write_the_deleter_had_not_seen_wins() -> None:
    sim = _deleted_apart(2, 0, 5)  # node 0 saw the 5, not what node 2 writes meanwhile
    _count(sim, 2, "k", 1)
    sim.run(3.0)
    assert _values(sim, "k") == [None, None, 6]
    sim.heal()
    assert sim.run_until_converged(20.0).converged
    # Update wins: the key lives. Node 2's state held the old 5 as well, and a
    # counter cannot subtract it, so the whole merged state stays (the documented rule).
    assert _values(sim, "k") == [6, 6, 6]
    assert all(not sim.engine(i).is_tombstone("k") for i in range(3))


def test_a_member_away_during_the_delete_does_not_bring_the_old_state_back() -> None:
    sim = _deleted_apart(3, 0, 5)
    sim.run(2.0)
    _count(sim, 1, "k", 1)  # written anew after the delete, on its side
    sim.run(3.0)
    assert _values(sim, "k") == [1, 1, 5]
    sim.heal()
    assert sim.run_until_converged(20.0).converged
    assert _values(sim, "k") == [1, 1, 1]  # the old 5 is gone from node 2 too
    assert sim.engine(0).stats()["drop_deleted"] + sim.engine(1).stats()["drop_deleted"] >= 1


def test_a_restarted_deleter_keeps_its_tombstone() -> None:
    sim = _deleted_apart(4, 1, 4)
    sim.run(2.0)
    sim.crash(0)
    sim.crash(1)
    sim.run(1.0)
    sim.restart(0, keep_state=True)
    sim.heal()
    assert sim.run_until(lambda: _values(sim, "k")[2] is None, 30.0)
    assert sim.engine(0).get("k") is None


def test_tombstones_leave_memory_and_the_hash_tree_after_their_time() -> None:
    sim = Simulation(3, 5, _config(deleted_keys_kept=30.0), formed=True)
    for n in range(20):
        _count(sim, n % 3, f"k{n}")
    _count(sim, 0, "kept")
    assert sim.run_until_converged(10.0).converged
    for n in range(20):
        sim.delete(n % 3, f"k{n}")
    sim.run(5.0)
    assert all(len(sim.engine(i).lives()) == 21 for i in range(3))
    sim.run(40.0)
    for i in range(3):
        engine = sim.engine(i)
        assert engine.keys() == ["kept"]
        assert list(engine.lives()) == ["kept"]
        assert len(engine._tree) == 1
    assert sim.run_until_converged(10.0).converged


def test_a_large_key_sent_in_parts_by_a_lagging_member_stays_deleted() -> None:
    sim = Simulation(3, 6, _config(), formed=True)
    replica = sim.engine(2).replica_id
    big = ORSet[int]()
    for element in range(20_000):
        big.add(element, "loader")
    sim.engine(2).restore("big", big)  # restored: content without a record ...
    sim.update(2, "big", ORSet, lambda s: s.add(-1, replica))  # ... until written
    assert sim.run_until_converged(60.0).converged
    sim.partition([0, 1], [2])
    sim.delete(0, "big")
    sim.run(3.0)
    assert sim.engine(1).get("big") is None
    sim.heal()
    assert sim.run_until(lambda: all(sim.engine(i).get("big") is None for i in range(3)), 60.0)
    assert sim.run_until_converged(30.0).converged


def test_a_quorum_read_of_a_deleted_key_counts_the_tombstones() -> None:
    sim = Simulation(3, 7, _config(), formed=True)
    _count(sim, 0, "k", 3)
    assert sim.run_until_converged(10.0).converged
    sim.delete(1, "k")
    assert sim.run_until(lambda: _values(sim, "k") == [None] * 3, 5.0)
    engine = sim.engine(0)
    request = engine.start_read("k", Majority().required(engine.quorum_members()), 2.0, sim.now)
    sim.run(1.0)
    result = sim.quorum_result(0, request)
    assert result is not None
    assert result.ok
    assert engine.get("k") is None


def test_a_write_that_could_not_be_persisted_does_not_keep_deleted_content() -> None:
    engine = Engine("a", "127.0.0.1:7001", GossipConfig.local(), random.Random(1), "a-1")
    engine.update("k", GCounter().increment("a-1", 3), 1.0)
    stored, stored_life = engine.get("k").copy(), engine.life("k")  # type: ignore[union-attr]
    engine.begin_local("k")
    engine.stamp_local("k", encode(GCounter().increment("a-1")))  # a write that then fails
    assert engine.life("k") == {"a-1": (2, 0)}
    engine.abort_local("k", stored, 2.0, life=stored_life, stored_life=True)
    assert engine.life("k") == {"a-1": (1, 0)}
    # A delete elsewhere that saw the write on disk removes it: the failed write is not
    # a live write keeping the old content.
    deletion = wrap({"a-1": (1, 1)}, b"")
    engine.receive(encode_frame("b", [encode_message(Delta("k", deletion))]), "127.0.0.1:7002", 3.0)
    assert engine.get("k") is None
    assert engine.is_tombstone("k")


def test_a_key_written_again_after_its_delete_is_still_repaired_step_by_step() -> None:
    sim = Simulation(3, 8, _config(), formed=True)
    for element in range(40):
        sim.update(0, "s", ORSet, lambda s, e=element: s.add(e, sim.replica_id(0)))
    assert sim.run_until_converged(10.0).converged
    sim.delete(1, "s")
    assert sim.run_until_converged(10.0).converged
    for element in range(100, 130):
        sim.update(2, "s", ORSet, lambda s, e=element: s.add(e, sim.replica_id(2)))
    assert sim.run_until_converged(10.0).converged
    sim.partition([0, 1], [2])
    sim.update(0, "s", ORSet, lambda s: s.add("left", sim.replica_id(0)))
    sim.update(2, "s", ORSet, lambda s: s.add("right", sim.replica_id(2)))
    sim.run(30.0)  # long enough to be found dead: the writes are left to anti-entropy
    opened = sum(sim.engine(i).stats()["repairs_opened"] for i in range(3))
    sim.heal()
    assert sim.run_until_converged(60.0).converged
    expected = {*range(100, 130), "left", "right"}
    assert all(sim.get(i, "s", ORSet).value == expected for i in range(3))
    assert sum(sim.engine(i).stats()["repairs_opened"] for i in range(3)) > opened


def test_relayed_deltas_with_records_are_not_joined_without_them() -> None:
    engine = Engine("a", "127.0.0.1:7001", GossipConfig.local(), random.Random(1), "a-1")
    for n, payload in enumerate((GCounter().increment("b-1"), GCounter().increment("b-1", 2))):
        wrapped = wrap({"b-1": (n + 1, 0)}, encode(payload))
        frame = encode_frame("b", [encode_message(Delta("k", wrapped))])
        engine.receive(frame, "127.0.0.1:7002", now=1.0 + n)
    assert engine.get("k") == GCounter().increment("b-1", 2)
    assert len(engine._queue) == 2  # each relayed as it came, with its record
    for item in ("1", "2"):
        assert engine._queue.get(("key", f"{item}:k")) is not None


def test_a_restored_tombstone_is_kept_its_time_from_the_start_not_from_zero() -> None:
    config = _config(deleted_keys_kept=60.0)
    engine = Engine("a", "127.0.0.1:7001", config, random.Random(1), "a-1")
    engine.restore_life("k", {"b-1": (2, 2)})
    assert engine.is_tombstone("k")
    start = 100_000.0  # a driver's clock: seconds since its machine booted, say
    engine.tick(start)
    engine.tick(start + 59.0)
    assert engine.is_tombstone("k")
    engine.tick(start + 61.0)
    assert not engine.is_tombstone("k")
    assert engine.life("k") is None


def test_restore_with_a_life_record_is_restore_then_restore_life() -> None:
    engines = [
        Engine("a", "127.0.0.1:7001", GossipConfig.local(), random.Random(1), "a-1")
        for _ in range(2)
    ]
    state, record = GCounter().increment("b-1", 2), {"b-1": (2, 1), "c-1": (1, 0)}
    engines[0].restore("k", state, life=record)
    engines[1].restore("k", state)
    engines[1].restore_life("k", record)
    for engine in engines:
        engine.restore_life("gone", {"b-1": (1, 1)})
    assert engines[0].life("k") == engines[1].life("k") == record
    assert engines[0]._tree.digest("k") == engines[1]._tree.digest("k")
    assert [e.is_tombstone("gone") for e in engines] == [True, True]
    assert not engines[0].is_tombstone("k")
