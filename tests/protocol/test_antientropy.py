"""The hash tree and the anti-entropy exchange: correctness and cost."""

from __future__ import annotations

import hashlib
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.protocol import antientropy
from crdtgossip.protocol.antientropy import (
    LEAF_KEYS,
    HashTree,
    describe,
    key_digest,
    key_position,
    push_pull_interval,
    respond,
    start,
    state_digest,
)
from crdtgossip.protocol.messages import (
    DIGEST_SIZE,
    MAX_TREE_DEPTH,
    TREE_FANOUT,
    State,
    Sync,
    encode_frame,
    encode_message,
)

from .cluster import VirtualCluster

# --- a tiny model store: key -> set of ints, merged by union ---------------------------


class Replica:
    def __init__(self, data: dict[str, frozenset[int]]) -> None:
        self.data = dict(data)
        self.tree = HashTree(self._digest)
        for key in self.data:
            self.tree.touch(key)

    def _digest(self, key: str) -> bytes:
        return state_digest(repr(sorted(self.data[key])).encode())

    def merge(self, key: str, value: frozenset[int]) -> None:
        self.data[key] = self.data.get(key, frozenset()) | value
        self.tree.touch(key)


def exchange(a: Replica, b: Replica) -> int:
    """Run one anti-entropy exchange from ``a`` to ``b``; return the messages sent."""
    in_flight: list[tuple[Replica, Replica, Sync]] = [(a, b, start(a.tree))]
    sent = 1
    for _ in range(4 * (MAX_TREE_DEPTH + 2)):
        if not in_flight:
            return sent
        source, target, message = in_flight.pop(0)
        plan = respond(target.tree, message)
        for key in plan.send_keys:
            source.merge(key, target.data[key])
            sent += 1
        for key in plan.repair_keys:  # the model repairs a key by swapping its states
            source_value, target_value = source.data[key], target.data[key]
            source.merge(key, target_value)
            target.merge(key, source_value)
            sent += 2
        reply = plan.reply()
        if reply is not None:
            in_flight.append((target, source, reply))
            sent += 1
    raise AssertionError("the exchange did not terminate")


keys = st.text(min_size=1, max_size=8)
values = st.frozensets(st.integers(0, 5), min_size=1, max_size=3)
stores = st.dictionaries(keys, values, max_size=60)


@given(stores, stores)
def test_one_exchange_makes_two_replicas_equal(
    left: dict[str, frozenset[int]], right: dict[str, frozenset[int]]
) -> None:
    a, b = Replica(left), Replica(right)
    exchange(a, b)
    expected = {k: left.get(k, frozenset()) | right.get(k, frozenset()) for k in {*left, *right}}
    assert a.data == expected
    assert b.data == expected
    assert a.tree.node_hash(0, 0) == b.tree.node_hash(0, 0)


@given(stores)
def test_equal_replicas_exchange_only_the_root(data: dict[str, frozenset[int]]) -> None:
    a, b = Replica(data), Replica(dict(reversed(list(data.items()))))
    assert exchange(a, b) == 1


@settings(max_examples=50)
@given(stores, st.lists(st.tuples(keys, values), max_size=30))
def test_incremental_updates_give_the_hashes_of_a_tree_built_at_once(
    data: dict[str, frozenset[int]], changes: list[tuple[str, frozenset[int]]]
) -> None:
    incremental = Replica(data)
    incremental.tree.refresh()
    for key, value in changes:  # one refresh per change: the key-by-key path
        incremental.merge(key, value)
        incremental.tree.refresh()
    rebuilt = Replica(incremental.data)
    for depth, prefix in [(0, 0), (1, 3), (2, 0x3A)]:
        assert incremental.tree.node_hash(depth, prefix) == rebuilt.tree.node_hash(depth, prefix)
    assert incremental.tree.children(0, 0) == rebuilt.tree.children(0, 0)
    assert len(incremental.tree) == len(incremental.data)


def test_an_empty_tree_has_zero_hashes() -> None:
    tree = HashTree(lambda key: b"")
    assert tree.node_hash(0, 0) == bytes(DIGEST_SIZE)
    assert tree.children(0, 0) == bytes(DIGEST_SIZE * TREE_FANOUT)
    assert describe(tree, 0, 0).entries == ()


def test_describe_lists_few_keys_and_hashes_many() -> None:
    few = Replica({f"k{i}": frozenset({i}) for i in range(LEAF_KEYS)})
    many = Replica({f"k{i}": frozenset({i}) for i in range(LEAF_KEYS + 1)})
    node = describe(few.tree, 0, 0)
    assert node.entries is not None
    assert len(node.entries) == LEAF_KEYS
    assert describe(many.tree, 0, 0).children is not None


def test_positions_are_64_bit_and_stable() -> None:
    assert key_position("hits") == int.from_bytes(
        hashlib.blake2b(b"hits", digest_size=8).digest(), "big"
    )
    assert 0 <= key_position("\U0001f600") < 1 << 64


def test_push_pull_interval_scales_like_memberlist() -> None:
    assert push_pull_interval(30.0, 32) == 30.0
    assert push_pull_interval(30.0, 33) == 60.0  # ceil(log2 33 - 5) + 1 = 2
    assert push_pull_interval(30.0, 64) == 60.0
    assert push_pull_interval(30.0, 65) == 90.0
    assert push_pull_interval(30.0, 1000) == 30.0 * 6


# --- the engine: 10,000 keys, 10 differences -----------------------------------------

KEY_COUNT = 10_000


def test_anti_entropy_cost_follows_the_difference_not_the_key_count() -> None:
    config = GossipConfig.local()
    cluster = VirtualCluster(seed=30, config=config)
    a, b = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all([a, b]), max_seconds=60)

    keys = [f"key-{i:05d}" for i in range(KEY_COUNT)]
    same = [encode_message(State(k, encode(GCounter().increment("seed")))) for k in keys]
    other = encode(GCounter().increment("other", 2))
    on_b = same[3:]  # b lacks the first 3 keys ...
    for i in range(500, 504):  # ... and holds 4 keys in another state
        on_b[i - 3] = encode_message(State(keys[i], other))
    full_state = encode_frame("seeder", same)
    # The states arrive as anti-entropy from a third party, so they are not gossiped.
    cluster.engines[a].receive(encode_frame("seeder", same[:-3]), "seeder:1", cluster.now)
    cluster.engines[b].receive(encode_frame("seeder", on_b), "seeder:1", cluster.now)
    differing = keys[:3] + keys[-3:] + keys[500:504]
    assert len(differing) == 10

    start_index = len(cluster.sent)

    def converged() -> bool:
        return all(cluster.engines[a].get(k) == cluster.engines[b].get(k) for k in differing)

    assert not converged()
    assert cluster.run_until(converged, max_seconds=2 * config.push_pull_interval)
    exchanged = sum(len(s.data) for s in cluster.sent[start_index:])
    # A digest per key alone would cost 10,000 x 16 bytes, over half the full state;
    # the hash tree costs a few child-hash blocks per difference.
    assert exchanged < len(full_state) / 20
    merged = cluster.engines[a].get(keys[501])
    assert merged is not None
    assert merged.value == 3

    # In sync, an exchange costs one root description each way at most.
    start_index = len(cluster.sent)
    cluster.run(2 * config.push_pull_interval)
    reliable = [s for s in cluster.sent[start_index:] if s.reliable]
    assert reliable  # exchanges did happen ...
    assert all(len(s.data) < 600 for s in reliable)  # ... and carried only the root


# --- digests: the types' own, never an encoding of the state ---------------------------


def test_a_key_digest_is_the_types_own_and_falls_back_to_the_encoding() -> None:
    counter = GCounter()
    counter.increment("a", 3)
    assert key_digest(counter) == counter._digest()
    with patch.object(GCounter, "_digest", None):  # a type with no digest of its own
        assert key_digest(counter) == state_digest(encode(counter))


def test_anti_entropy_never_encodes_a_state_to_digest_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(state: object) -> bytes:
        raise AssertionError("a digest was computed by encoding a state")

    monkeypatch.setattr(antientropy, "encode", refuse)
    cluster = VirtualCluster(seed=31, config=GossipConfig.local())
    a, b = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all([a, b]), max_seconds=60)
    for name in (a, b):
        cluster.engines[name].update("set", ORSet().add(name, name), cluster.now)
    assert cluster.run_until(
        lambda: cluster.engines[a].get("set") == cluster.engines[b].get("set"), max_seconds=40
    )
    cluster.run(2 * GossipConfig.local().push_pull_interval)
    assert all(engine.stats()["push_pulls"] for engine in cluster.engines.values())
