"""The engine end to end: several engines on the virtual network of :mod:`.cluster`."""

from __future__ import annotations

import os
import pathlib
import random
import subprocess
import sys

import pytest

from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.errors import ConfigError, MergeError, OperationError
from crdtgossip.protocol import (
    Engine,
    KeyChanged,
    MemberDead,
    MemberSuspect,
    Status,
)
from crdtgossip.protocol.antientropy import push_pull_interval
from crdtgossip.protocol.membership import FormedTable
from crdtgossip.protocol.messages import (
    SEAL_OVERHEAD,
    Delta,
    DeltaAck,
    DeltaInterval,
    MemberRecord,
    Members,
    State,
    Suspect,
    decode_frame,
    encode_frame,
    encode_message,
)
from crdtgossip.protocol.suspicion import suspicion_min_timeout

from .cluster import VirtualCluster

CONFIG = GossipConfig.local()


def _counter(cluster: VirtualCluster, name: str, key: str) -> int | None:
    state = cluster.engines[name].get(key)
    return None if state is None else state.value


def _increment(cluster: VirtualCluster, name: str, key: str, n: int = 1) -> None:
    engine = cluster.engines[name]
    state = engine.get(key)
    counter = state if isinstance(state, GCounter) else GCounter()
    engine.update(key, counter.increment(engine.replica_id, n), cluster.now)
    cluster._collect(name)


def _converged(cluster: VirtualCluster, names: list[str], key: str, value: int) -> bool:
    return all(_counter(cluster, n, key) == value for n in names if n not in cluster.stopped)


# --- membership ----------------------------------------------------------------------


def test_five_engines_join_and_all_see_five_alive() -> None:
    cluster = VirtualCluster(seed=1, config=CONFIG)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    for name in names:
        members = cluster.engines[name].members()
        assert [m.node_id for m in members] == names
        assert {m.address for m in members} == {cluster.address(n) for n in names}


def test_a_stopped_engine_is_suspected_then_declared_dead_within_the_bound() -> None:
    cluster = VirtualCluster(seed=2, config=CONFIG)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    cluster.run(5.0)  # settle: health scores back to normal
    victim, observers = names[2], [n for n in names if n != names[2]]
    stopped_at = cluster.now
    cluster.stop(victim)

    n = len(names)
    minimum = suspicion_min_timeout(CONFIG.suspicion_mult, n, CONFIG.probe_interval)
    maximum = minimum * CONFIG.suspicion_max_timeout_mult
    # Shuffled round-robin probes every member at least once per N-1 intervals, so
    # two rounds bound the wait for the first failed probe; then the longest
    # suspicion; then some intervals for the verdict to spread.
    bound = 2 * (n - 1) * CONFIG.probe_interval + maximum + 3 * CONFIG.probe_interval

    def all_dead() -> bool:
        return all(cluster.status(o, victim) is Status.DEAD for o in observers)

    assert cluster.run_until(all_dead, max_seconds=bound)
    first_suspect = min(
        t
        for o in observers
        for t, e in cluster.events[o]
        if isinstance(e, MemberSuspect) and e.member.node_id == victim and t >= stopped_at
    )
    for observer in observers:
        kinds = [(t, type(e)) for t, e in cluster.about(observer, victim) if t >= stopped_at]
        types = [k for _, k in kinds]
        assert MemberSuspect in types, observer
        assert types.index(MemberSuspect) < types.index(MemberDead), observer
        dead_at = next(t for t, k in kinds if k is MemberDead)
        # The suspicion timer ran: nobody declared it dead before the minimum.
        assert dead_at - first_suspect >= minimum - 1e-9
        assert dead_at - stopped_at <= bound


def test_a_suspected_live_member_refutes_with_a_higher_incarnation() -> None:
    cluster = VirtualCluster(seed=3, config=CONFIG)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    target = names[3]
    before = cluster.engines[target].incarnation
    # n1 hears, wrongly, that n2 suspects n3.
    frame = encode_frame(names[2], [encode_message(Suspect(target, before, names[2]))])
    cluster.engines[names[1]].receive(frame, cluster.address(names[2]), cluster.now)
    cluster._collect(names[1])
    assert cluster.status(names[1], target) is Status.SUSPECT

    maximum = CONFIG.suspicion_max_timeout_mult * suspicion_min_timeout(
        CONFIG.suspicion_mult, 5, CONFIG.probe_interval
    )
    cluster.run(maximum * 2)
    assert cluster.engines[target].incarnation > before
    assert cluster.sees_all(names)
    for name in names:
        assert (
            next(m for m in cluster.engines[name].members() if m.node_id == target).incarnation
            > before
        )
        assert not any(
            isinstance(e, MemberDead) and e.member.node_id == target
            for _, e in cluster.events[name]
        )


def _restart_after_death(seed: int, incarnation: int) -> tuple[VirtualCluster, list[str], int]:
    cluster = VirtualCluster(seed=seed, config=CONFIG)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    victim = names[4]
    old_incarnation = cluster.engines[victim].incarnation
    cluster.stop(victim)
    assert cluster.run_until(
        lambda: all(cluster.status(o, victim) is Status.DEAD for o in names[:4]), max_seconds=120
    )
    engine = cluster.add(victim, incarnation=incarnation, generation=1)
    engine.join([cluster.address(names[0])], cluster.now)
    cluster._collect(victim)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    return cluster, names, old_incarnation


def test_restart_with_a_higher_incarnation_rejoins() -> None:
    cluster, names, old = _restart_after_death(seed=5, incarnation=7)
    assert all(
        next(m for m in cluster.engines[n].members() if m.node_id == names[4]).incarnation >= 7
        for n in names
    )
    assert old < 7


def test_restart_from_scratch_is_never_stuck_dead() -> None:
    # memberlist#311: the restarted node starts again at incarnation 0; peers tell it
    # of its old incarnation and it outranks it.
    cluster, names, old = _restart_after_death(seed=6, incarnation=0)
    assert cluster.engines[names[4]].incarnation > old


# --- data ----------------------------------------------------------------------------


def test_an_update_on_each_engine_converges_everywhere() -> None:
    cluster = VirtualCluster(seed=7, config=CONFIG)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    for name in names:
        _increment(cluster, name, "hits")
    assert cluster.run_until(lambda: _converged(cluster, names, "hits", 5), max_seconds=30)
    changed = [e for _, e in cluster.events[names[0]] if isinstance(e, KeyChanged)]
    assert changed
    assert all(e.key == "hits" for e in changed)


def test_updates_before_joining_reach_the_cluster_through_the_join() -> None:
    cluster = VirtualCluster(seed=8, config=CONFIG)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    late = cluster.add("late")
    _increment(cluster, "late", "early-bird", 3)
    late.join([cluster.address(names[0])], cluster.now)
    cluster._collect("late")
    everyone = [*names, "late"]
    assert cluster.run_until(lambda: _converged(cluster, everyone, "early-bird", 3), 30)


def test_a_delta_is_never_sent_back_to_the_engine_it_came_from() -> None:
    cluster = VirtualCluster(seed=9, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    _increment(cluster, names[0], "k")
    assert cluster.run_until(lambda: _converged(cluster, names, "k", 1), max_seconds=10)
    cluster.run(10.0)
    back = [
        s
        for s in cluster.sent
        if s.source == names[1]
        and any(
            isinstance(m, Delta | DeltaInterval) for m in decode_frame(s.data, 1 << 30).messages
        )
    ]
    assert back == []
    # and in the other direction it did go, and came back acknowledged
    assert any(
        s.source == names[0]
        and any(isinstance(m, DeltaInterval) for m in decode_frame(s.data, 1 << 30).messages)
        for s in cluster.sent
    )
    assert any(
        s.source == names[1]
        and any(isinstance(m, DeltaAck) for m in decode_frame(s.data, 1 << 30).messages)
        for s in cluster.sent
    )


def test_datagrams_fit_the_budget_and_small_deltas_share_frames() -> None:
    cluster = VirtualCluster(seed=10, config=CONFIG)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    start = len(cluster.sent)
    for i in range(40):
        _increment(cluster, names[0], f"key-{i}")
    assert cluster.run_until(
        lambda: all(_converged(cluster, names, f"key-{i}", 1) for i in range(40)), 30
    )
    budget = CONFIG.max_datagram - SEAL_OVERHEAD
    datagrams = [s for s in cluster.sent[start:] if not s.reliable]
    assert all(len(s.data) <= budget for s in datagrams)
    delta_counts = [
        len(m.entries)
        for s in cluster.sent[start:]
        for m in decode_frame(s.data, 1 << 30).messages
        if isinstance(m, DeltaInterval)
    ]
    assert max(delta_counts) >= 10  # batched, not one delta per message


def test_a_delta_too_large_for_a_datagram_goes_reliable() -> None:
    cluster = VirtualCluster(seed=11, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    engine = cluster.engines[names[0]]
    delta: ORSet[str] = ORSet()
    big = ORSet[str]()
    for i in range(200):
        delta.merge(big.add(f"element-{i:04d}-" + "x" * 20, engine.replica_id))
    engine.update("big", delta, cluster.now)
    cluster._collect(names[0])
    assert cluster.run_until(
        lambda: cluster.engines[names[1]].get("big") == cluster.engines[names[0]].get("big"), 10
    )
    reliable = [
        s
        for s in cluster.sent
        if s.reliable
        and any(isinstance(m, DeltaInterval) for m in decode_frame(s.data, 1 << 30).messages)
    ]
    assert reliable
    assert all(len(s.data) > CONFIG.max_datagram - SEAL_OVERHEAD for s in reliable)


def test_merge_failures_and_bad_payloads_are_dropped_and_counted() -> None:
    cluster = VirtualCluster(seed=12, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    _increment(cluster, names[0], "k")
    engine = cluster.engines[names[0]]
    wrong_type = encode_message(Delta("k", encode(ORSet())))
    garbage = encode_message(State("k", b"\x93\x01\x02"))
    frame = encode_frame(names[1], [wrong_type, garbage])
    engine.receive(frame, cluster.address(names[1]), cluster.now)
    stats = engine.stats()
    assert stats["merge_errors"] == 1
    assert stats["drop_type_mismatch"] == 1
    assert stats["drop_bad_payload"] == 1
    assert stats["decode_errors"] == 1
    assert isinstance(engine.get("k"), GCounter)


# --- the whole story under loss and partition -----------------------------------------


def test_loss_and_a_healed_partition_converge_on_data_and_membership() -> None:
    cluster = VirtualCluster(seed=13, config=CONFIG, loss=0.2)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=120)
    for name in names:
        _increment(cluster, name, "before")
    cluster.run(5.0)
    cluster.partition(names[:2], names[2:])
    for name in names:
        _increment(cluster, name, "during", 2)
    cluster.run(60.0)  # long enough for each side to declare the other dead
    assert cluster.status(names[0], names[4]) in (Status.SUSPECT, Status.DEAD)
    assert _counter(cluster, names[0], "during") != 10  # the partition held
    cluster.heal()

    def converged() -> bool:
        return (
            cluster.sees_all(names)
            and _converged(cluster, names, "before", 5)
            and _converged(cluster, names, "during", 10)
        )

    assert cluster.run_until(converged, max_seconds=600)


# --- determinism ---------------------------------------------------------------------


def _scripted_run(seed: int) -> list[tuple[str, str, bytes, bool]]:
    cluster = VirtualCluster(seed=seed, config=CONFIG, loss=0.1)
    names = cluster.start(4)
    cluster.run(5.0)
    for name in names:
        _increment(cluster, name, "replay")
    cluster.stop(names[3])
    cluster.run(30.0)
    return [(s.source, s.destination, s.data, s.reliable) for s in cluster.sent]


def test_the_same_seed_replays_the_same_bytes() -> None:
    first, second = _scripted_run(21), _scripted_run(21)
    assert len(first) > 100
    assert first == second
    assert _scripted_run(22) != first


# --- construction and local misuse ---------------------------------------------------


@pytest.mark.parametrize(
    ("node_id", "address", "replica_id", "incarnation"),
    [
        ("", "a:1", "r", 0),
        ("x" * 200, "a:1", "r", 0),
        ("a", "", "r", 0),
        ("a", "a:1", "", 0),
        ("a", "a:1", "r", -1),
        ("a", "a:1", "r", True),
    ],
)
def test_bad_construction_raises_config_error(
    node_id: str, address: str, replica_id: str, incarnation: int
) -> None:
    with pytest.raises(ConfigError):
        Engine(node_id, address, CONFIG, random.Random(0), replica_id, incarnation=incarnation)


def test_local_update_misuse_raises_and_changes_nothing() -> None:
    engine = Engine("a", "a:1", CONFIG, random.Random(0), "a-1")
    engine.update("k", GCounter().increment("a-1"), 0.0)
    with pytest.raises(MergeError):
        engine.update("k", ORSet[str]().add("x", "a-1"), 0.0)
    with pytest.raises(OperationError):
        engine.update("", GCounter().increment("a-1"), 0.0)
    with pytest.raises(OperationError):
        engine.update("k" * 2000, GCounter().increment("a-1"), 0.0)
    assert engine.keys() == ["k"]
    state = engine.get("k")
    assert isinstance(state, GCounter)
    assert state.value == 1
    assert engine.get("k") is state  # the live state, not a copy


def test_next_wakeup_before_any_input_asks_for_an_immediate_tick() -> None:
    engine = Engine("a", "a:1", CONFIG, random.Random(0), "a-1")
    assert engine.next_wakeup() == 0.0
    engine.tick(100.0)
    assert 100.0 < engine.next_wakeup() <= 100.0 + CONFIG.probe_interval
    assert engine.members()[0].status is Status.ALIVE
    assert engine.take_outgoing() == []  # alone: nobody to talk to


def _formed_table(size: int) -> FormedTable:
    return FormedTable(MemberRecord(f"n{i}", f"n{i}:1", 0, Status.ALIVE) for i in range(size))


def test_an_engine_adopting_a_formed_table_knows_everyone_and_says_nothing() -> None:
    table = _formed_table(50)
    engine = Engine("n3", "n3:1", GossipConfig.lan(), random.Random(1), "n3-1")
    engine.adopt_formed(table, 10.0)
    members = engine.members()
    assert [m.node_id for m in members] == sorted(f"n{i}" for i in range(50))
    assert {m.status for m in members} == {Status.ALIVE}
    assert engine.take_events() == []
    assert engine.take_outgoing() == []
    assert engine.stats()["queue_length"] == 0
    assert engine.stats()["members_alive"] == 50
    assert engine.next_wakeup() > 10.0  # started: its timers run from 10.0
    with pytest.raises(ConfigError):
        engine.adopt_formed(table, 10.0)
    started = Engine("n4", "n4:1", GossipConfig.lan(), random.Random(1), "n4-1")
    started.tick(0.0)
    with pytest.raises(ConfigError):
        started.adopt_formed(table, 0.0)


def _first_push_pull(engine: Engine, limit: float) -> float:
    """The time ``engine``, ticked at each wakeup, first sends its member table."""
    now = 0.0
    for _ in range(100_000):
        now = engine.next_wakeup()
        if now > limit:
            break
        engine.tick(now)
        for frame in engine.take_outgoing():
            messages = decode_frame(frame.data, 1 << 24).messages
            if frame.reliable and any(isinstance(m, Members) for m in messages):
                return now
    return now


def test_a_formed_engine_first_exchanges_state_within_the_interval_scaled_for_n() -> None:
    # As in a cluster that has run for a while: not all within the unscaled 30 s.
    config = GossipConfig.lan()
    table = _formed_table(100)
    scaled = push_pull_interval(config.push_pull_interval, 100)
    assert scaled > config.push_pull_interval
    firsts = []
    for seed in range(12):
        engine = Engine("n0", "n0:1", config, random.Random(seed), "n0-1")
        engine.adopt_formed(table, 0.0)
        firsts.append(_first_push_pull(engine, scaled))
    assert max(firsts) <= scaled
    assert max(firsts) > config.push_pull_interval


_REPLAY_SCRIPT = """
import hashlib, sys
sys.path[:0] = [{tests!r}, {root!r}]
from protocol.test_engine import _scripted_run
digest = hashlib.sha256()
for source, destination, data, reliable in _scripted_run(21):
    digest.update(b"%s>%s:%d:%s" % (source.encode(), destination.encode(), reliable, data))
print(digest.hexdigest())
"""


def test_replay_does_not_depend_on_the_interpreter_hash_seed() -> None:
    # Set iteration order changes with PYTHONHASHSEED; nothing that reaches the wire
    # may depend on it. Two fresh interpreters with different seeds must agree.
    tests_dir = pathlib.Path(__file__).resolve().parents[1]
    script = _REPLAY_SCRIPT.format(tests=str(tests_dir), root=str(tests_dir.parent))
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1
    assert len(next(iter(digests))) == 64
