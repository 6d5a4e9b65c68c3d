"""Expiry of idle keys (GossipConfig.expire_keys_after): gone on every member, no
tombstone, kept alive by writes only, never given back by a member that lags."""

from __future__ import annotations

import dataclasses
import random
import sys
import time

import msgpack
import pytest

from crdtgossip import ConfigError, GCounter, LWWRegister, OperationError
from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, KeyChanged
from crdtgossip.protocol.expiry import ExpiryRules, LastWrites
from crdtgossip.protocol.messages import (
    Delta,
    ReadReply,
    State,
    StateChunk,
    decode_frame,
    encode_frame,
    encode_message,
)
from crdtgossip.protocol.wire import Kind
from crdtgossip.testing import Simulation

from .cluster import VirtualCluster

_NS = 1_000_000_000
RULES = {"cache/*": 5.0, "cache/long": 60.0}


def _config(**rules: float) -> GossipConfig:
    return dataclasses.replace(GossipConfig.local(), expire_keys_after=rules or RULES)


def _engine(config: GossipConfig | None = None, wall: list[int] | None = None) -> Engine:
    clock = wall if wall is not None else [100 * _NS]
    return Engine(
        "a",
        "127.0.0.1:7001",
        config or _config(),
        random.Random(1),
        "a-1",
        wall_clock=lambda: clock[0],
    )


def _count(sim: Simulation, i: int, key: str) -> None:
    replica = sim.replica_id(i)
    sim.update(i, key, GCounter, lambda c: c.increment(replica))


def _held(sim: Simulation, key: str) -> list[bool]:
    return [sim.engine(i).get(key) is not None for i in range(sim.size)]


# --- the rules -----------------------------------------------------------------------


def test_rules_are_checked_and_kept_in_one_order() -> None:
    a = dataclasses.replace(GossipConfig(), expire_keys_after={"b/*": 2, "a": 3.5})
    b = dataclasses.replace(GossipConfig(), expire_keys_after=[("a", 3.5), ("b/*", 2.0)])
    assert a.expire_keys_after == (("a", 3.5), ("b/*", 2.0))
    assert a == b
    assert GossipConfig().expire_keys_after == ()


@pytest.mark.parametrize(
    "rules",
    [
        {"": 5},
        {"a*b": 5},
        {"a": 0.5},
        {"a": float("inf")},
        {"a": True},
        {"a": "5"},
        [("a", 5), ("a", 6)],
        [("a",)],
        "a",
        5,
    ],
)
def test_bad_rules_are_refused(rules: object) -> None:
    with pytest.raises(ConfigError, match="expire_keys_after"):
        dataclasses.replace(GossipConfig(), expire_keys_after=rules)


def test_an_exact_key_beats_a_prefix_and_a_longer_prefix_a_shorter() -> None:
    rules = ExpiryRules((("*", 1.0), ("a/*", 2.0), ("a/b/*", 3.0), ("a/b/c", 4.0)))
    assert rules.ttl_ns("zzz") == 1 * _NS
    assert rules.ttl_ns("a/x") == 2 * _NS
    assert rules.ttl_ns("a/b/x") == 3 * _NS
    assert rules.ttl_ns("a/b/c") == 4 * _NS
    assert ExpiryRules((("a/*", 2.0),)).ttl_ns("b") is None
    assert not ExpiryRules(())


def test_the_deadline_heap_stays_near_the_keys_it_holds() -> None:
    writes = LastWrites(ExpiryRules((("*", 1.0),)))
    for stamp in range(1, 10_001):
        writes.raise_to("k", stamp)  # one key written 10,000 times
    assert len(writes) == 1
    assert len(writes._heap) <= 2 * 1 + 64 + 1
    assert writes.next_deadline() == 10_000 + _NS
    assert writes.due(10_000 + _NS) == ["k"]


# --- one engine ----------------------------------------------------------------------


def test_a_key_expires_after_its_time_and_leaves_nothing() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    engine.update("cache/a", GCounter().increment("a-1"), now=1.0)
    engine.update("cache/long", GCounter().increment("a-1"), now=1.0)
    engine.update("kept", GCounter().increment("a-1"), now=1.0)
    engine.take_events()
    assert engine.next_wakeup() <= 1.0 + 5.0
    wall[0] += 5 * _NS - 1
    engine.tick(6.0 - 1e-9)
    assert engine.get("cache/a") is not None
    wall[0] += 1
    engine.tick(6.0)
    assert engine.keys() == ["cache/long", "kept"]
    assert engine._tree.digest("cache/a") is None
    assert engine._sizes.estimate("cache/a") == 0
    assert engine.written("cache/a") == 0
    assert engine.stats()["keys_expired"] == 1
    assert engine.stats()["keys_deleted"] == 0
    assert KeyChanged("cache/a", deleted=True, expired=True) in engine.take_events()


def test_only_writes_keep_a_key_alive() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    engine.update("cache/a", GCounter().increment("a-1"), now=1.0)
    wall[0] += 4 * _NS
    engine.tick(5.0)
    assert engine.get("cache/a") is not None  # a read
    engine.update("cache/a", GCounter().increment("a-1", 2), now=5.0)
    wall[0] += 4 * _NS
    engine.tick(9.0)
    assert engine.get("cache/a") is not None  # 4 s after the second write
    wall[0] += 1 * _NS
    engine.tick(10.0)
    assert engine.get("cache/a") is None


def test_a_key_being_persisted_waits_and_its_write_keeps_it() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    engine.update("cache/a", GCounter().increment("a-1"), now=1.0)
    state = engine.get("cache/a")
    assert state is not None
    engine.begin_local("cache/a")
    wall[0] += 6 * _NS
    engine.tick(7.0)
    assert engine.get("cache/a") is state  # held: not dropped under the writer
    delta = state.increment("a-1")  # type: ignore[attr-defined]
    engine.commit_local("cache/a", state, delta, now=7.0)
    wall[0] += 2 * _NS
    engine.tick(9.0)
    assert engine.get("cache/a") is state  # the write moved its deadline
    assert engine.written("cache/a") == 106 * _NS


def test_a_state_stamped_past_its_expiry_is_dropped_and_counted() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    old = GCounter().increment("b-1", 9)
    late = State("cache/a", encode(old), written=95 * _NS)  # expired at 100 s
    engine.receive(encode_frame("b", [encode_message(late)]), "127.0.0.1:7002", now=1.0)
    assert engine.get("cache/a") is None
    assert engine.stats()["drop_expired"] == 1
    fresh = State("cache/a", encode(old), written=97 * _NS)
    engine.receive(encode_frame("b", [encode_message(fresh)]), "127.0.0.1:7002", now=1.0)
    assert engine.get("cache/a") is not None
    assert engine.written("cache/a") == 97 * _NS  # the sender's stamp, not now
    wall[0] += 2 * _NS
    engine.tick(3.0)
    assert engine.get("cache/a") is None  # at the sender's time, never later


def test_an_unstamped_state_refreshes_nothing() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    engine.update("cache/a", GCounter().increment("a-1"), now=1.0)
    wall[0] += 3 * _NS
    bare = State("cache/a", encode(GCounter().increment("b-1")))
    engine.receive(encode_frame("b", [encode_message(bare)]), "127.0.0.1:7002", now=4.0)
    assert engine.written("cache/a") == 100 * _NS  # its own stamp kept


def test_a_state_carries_its_stamp_on_the_wire_only_when_set() -> None:
    stamped, bare = State("k", b"\x01", written=12345), State("k", b"\x01")
    frame = encode_frame("b", [encode_message(stamped), encode_message(bare)])
    assert decode_frame(frame, 65_536).messages == (stamped, bare)
    assert msgpack.unpackb(encode_message(bare))[0] == Kind.STATE
    assert msgpack.unpackb(encode_message(stamped)) == [Kind.STATE_AT, "k", b"\x01", 12345]


def test_reserved_keys_are_refused_locally_and_from_the_wire() -> None:
    engine = _engine()
    with pytest.raises(OperationError, match="reserved"):
        engine.update("\x00written/k", GCounter().increment("a-1"), now=1.0)
    delta = Delta("\x00written/k", encode(GCounter().increment("b-1")))
    engine.receive(encode_frame("b", [encode_message(delta)]), "127.0.0.1:7002", now=1.0)
    assert engine.keys() == []
    assert engine.stats()["drop_malformed"] == 1


def test_without_rules_nothing_is_stamped() -> None:
    engine = _engine(GossipConfig.local())
    engine.update("cache/a", GCounter().increment("a-1"), now=1.0)
    assert engine.written("cache/a") == 0
    assert not engine.expires("cache/a")
    assert len(engine._last_writes) == 0


# --- a cluster -----------------------------------------------------------------------


def test_an_idle_key_goes_from_every_member_and_the_rest_stays() -> None:
    sim = Simulation(5, 31, _config(), formed=True)
    _count(sim, 0, "cache/a")
    _count(sim, 1, "kept")
    assert sim.run_until_converged(10.0).converged
    assert _held(sim, "cache/a") == [True] * 5
    assert sim.holders("cache/a") == 5
    sim.run(6.0)
    assert _held(sim, "cache/a") == [False] * 5
    assert sim.holders("cache/a") == 0
    assert _held(sim, "kept") == [True] * 5
    for i in range(5):
        engine = sim.engine(i)
        assert engine.stats()["keys_expired"] == 1
        assert engine._tree.digest("cache/a") is None
        assert len(engine._last_writes) == 0
    assert sim.run_until_converged(10.0).converged


def test_a_write_that_missed_expired_members_lives_its_time_from_delivery() -> None:
    """Partitioned, node 2 writes again; nodes 0 and 1 expire the key at the first
    write's deadline. Healed, node 2's write reaches them as any write does and keeps
    the key its full time from there; then every member drops it, node 2 included
    (it takes the later stamp with their states), and none gives it back."""
    config = dataclasses.replace(_config(**{"cache/*": 20.0}), push_pull_interval=1.0)
    sim = Simulation(3, 7, config, formed=True)
    _count(sim, 0, "cache/a")
    first = sim.now
    assert sim.run_until_converged(2.0).converged
    sim.partition([0, 1], [2])
    sim.run(first + 5.0 - sim.now)
    _count(sim, 2, "cache/a")
    sim.run(first + 21.0 - sim.now)  # the first write's time is up, not the second's
    assert _held(sim, "cache/a") == [False, False, True]
    sim.heal()
    assert sim.run_until(lambda: all(_held(sim, "cache/a")), 5.0)
    back = sim.now
    # Node 0's own increment comes back too, with node 2's state (anti-entropy).
    assert sim.run_until(
        lambda: all(sim.get(i, "cache/a", GCounter).value == 2 for i in range(3)), 5.0
    )
    sim.run(back + 19.0 - sim.now)
    assert _held(sim, "cache/a") == [True, True, True]
    sim.run(3.0)
    assert _held(sim, "cache/a") == [False, False, False]
    sim.run(10.0)
    assert _held(sim, "cache/a") == [False, False, False]  # and it stays gone
    assert sim.run_until_converged(10.0).converged


def test_a_large_key_sent_in_chunks_carries_its_stamp() -> None:
    register: LWWRegister[bytes] = LWWRegister()
    register.set(bytes(range(256)) * 1024, "r", timestamp=5)  # 256 KiB in one value
    config = dataclasses.replace(
        GossipConfig.local(),
        probe_interval=1000.0,
        reconnect_interval=1000.0,
        max_reliable_frame=16 * 1024,
        expire_keys_after={"big": 3600.0},
    )
    cluster = VirtualCluster(seed=5, config=config)
    a = cluster.add("a")
    stamp = time.time_ns() - 10 * _NS
    a.restore("big", register.copy(), copy=False, written=stamp)
    b = cluster.add("b")
    b.join([cluster.address("a")], cluster.now)
    cluster._collect("b")
    assert cluster.run_until(lambda: b.get("big") == register, max_seconds=60.0)
    assert b.stats()["chunked_states_in"] == 1
    assert b.written("big") == stamp  # the sender's, not the time it arrived


def test_a_chunk_carries_its_stamp_on_the_wire_only_when_set() -> None:
    stamped = StateChunk("k", 1, 0, 2, 4, b"ab", written=77)
    bare = StateChunk("k", 1, 1, 2, 4, b"cd")
    frame = encode_frame("b", [encode_message(stamped), encode_message(bare)])
    assert decode_frame(frame, 65_536).messages == (stamped, bare)
    assert msgpack.unpackb(encode_message(bare))[0] == Kind.STATE_CHUNK
    assert msgpack.unpackb(encode_message(stamped))[0] == Kind.STATE_CHUNK_AT


def test_the_per_key_tables_shrink_after_a_mass_expiry() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    for index in range(5000):
        engine.update(f"cache/{index}", GCounter().increment("a-1"), now=1.0)
    engine.update("kept", GCounter().increment("a-1"), now=1.0)
    full = sys.getsizeof(engine._store), sys.getsizeof(engine._last_writes.stamps)
    wall[0] += 6 * _NS
    engine.tick(7.0)
    assert engine.keys() == ["kept"]
    assert sys.getsizeof(engine._store) < full[0] / 10
    assert sys.getsizeof(engine._last_writes.stamps) < full[1] / 10
    assert engine._tree.digest("kept") is not None  # what stays is intact
    engine.next_wakeup()  # skips the heap's stale entries
    assert len(engine._last_writes._heap) == 0


@pytest.mark.parametrize("seed", range(12))
def test_under_loss_and_partitions_expired_keys_go_everywhere_and_stay_gone(seed: int) -> None:
    """Writes to five keys from random members for 20 virtual seconds, with 10% loss,
    duplicates, reordering and two partitions; then no writes. Every key must be gone
    from every member within a few expiry times, and none may come back."""
    rng = random.Random(seed)
    config = dataclasses.replace(_config(**{"cache/*": 8.0}), push_pull_interval=1.0)
    sim = Simulation(5, seed, config, loss=0.1, duplicate=0.05, reorder=0.05, formed=True)
    keys = [f"cache/{index}" for index in range(5)]
    for second in range(20):
        if second in (4, 12):
            members = list(range(5))
            rng.shuffle(members)
            sim.partition(members[:2], members[2:])
        if second in (8, 15):
            sim.heal()
        for _ in range(rng.randint(0, 3)):
            _count(sim, rng.randrange(5), rng.choice(keys))
        sim.run(1.0)
    sim.heal()
    sim.run(3 * 8.0)
    held = {key: _held(sim, key) for key in keys}
    assert all(not any(row) for row in held.values()), held
    sim.run(2 * 8.0)
    assert all(not any(_held(sim, key)) for key in keys)
    assert all(sim.holders(key) == 0 for key in keys)


def test_a_quorum_read_does_not_keep_a_key_alive() -> None:
    sim = Simulation(3, 5, _config(), formed=True)
    _count(sim, 1, "cache/a")
    written_at = sim.now
    assert sim.run_until_converged(2.0).converged
    sim.run(written_at + 3.0 - sim.now)
    engine = sim.engine(0)
    stamp = engine.written("cache/a")
    request = engine.start_read("cache/a", 3, 1.0, sim.now)
    sim._collect(0)
    assert sim.run_until(lambda: sim.quorum_result(0, request) is not None, 1.0)
    result = sim.quorum_result(0, request)
    assert result is not None
    assert result.ok
    # The replies bring their senders' stamps (the largest is kept), not the read's time.
    assert (
        stamp
        <= engine.written("cache/a")
        == max(sim.engine(i).written("cache/a") for i in range(3))
    )
    sim.run(written_at + 5.5 - sim.now)
    assert _held(sim, "cache/a") == [False, False, False]


def test_a_read_reply_carries_the_stamp_on_the_wire_only_when_set() -> None:
    stamped, bare = ReadReply(3, "k", b"\x01", 99), ReadReply(3, "k", b"\x01")
    frame = encode_frame("b", [encode_message(stamped), encode_message(bare)])
    assert decode_frame(frame, 65_536).messages == (stamped, bare)
    assert msgpack.unpackb(encode_message(bare))[0] == Kind.READ_REPLY
    assert msgpack.unpackb(encode_message(stamped))[0] == Kind.READ_REPLY_AT


def test_a_state_stamped_beyond_the_clock_offset_is_refused() -> None:
    wall = [100 * _NS]
    engine = _engine(wall=wall)
    ahead = State("cache/a", encode(GCounter().increment("b-1")), written=102 * _NS)
    engine.receive(encode_frame("b", [encode_message(ahead)]), "127.0.0.1:7002", now=1.0)
    assert engine.get("cache/a") is None
    assert engine.stats()["drop_clock_ahead"] == 1
